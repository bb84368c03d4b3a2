//! The deployment files as an operator gets them: docker-compose.yml wires every service by
//! environment with health checks and volumes, only with settings switchboard knows; the
//! Dockerfile builds in stages and runs unprivileged; Grafana's provisioning points the
//! dashboards at Prometheus. (`.ci/run` also has `docker-compose config` and `promtool`
//! check them.)

use std::collections::BTreeSet;

use serde_yaml::Value;

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_compose_stack_wires_every_service_with_health_checks_and_volumes() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "switchboard",
            "postgres",
            "redis",
            "qdrant",
            "prometheus",
            "grafana"
        ])
    );
    for (name, service) in services {
        let test = &service["healthcheck"]["test"];
        assert!(!test.is_null(), "{name:?} has no health check");
    }

    let switchboard = &compose["services"]["switchboard"];
    let env = switchboard["environment"].as_mapping().unwrap();
    let var = |key: &str| {
        env[&Value::from(key)]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        var("DATABASE_URL").starts_with("postgres://")
            && var("DATABASE_URL").contains("@postgres:5432/")
    );
    assert_eq!(var("REDIS_URL"), "redis://redis:6379");
    assert_eq!(var("QDRANT_URL"), "http://qdrant:6334");
    assert_eq!(var("SWITCHBOARD_LISTEN"), "0.0.0.0:8080");
    // Every variable given to switchboard is one of its settings.
    let settings = file("src/settings.rs");
    for key in env.keys() {
        let key = key.as_str().unwrap();
        assert!(
            settings.contains(&format!("env = \"{key}\"")),
            "{key} is not a switchboard setting"
        );
    }
    // Secrets come from the environment, never from the file.
    for secret in [
        "JWT_SECRET",
        "TWILIO_AUTH_TOKEN",
        "OPENAI_API_KEY",
        "ELEVENLABS_API_KEY",
    ] {
        assert!(
            var(secret).starts_with("${"),
            "{secret} is written into the file"
        );
    }
    for needed in ["postgres", "redis"] {
        assert_eq!(
            switchboard["depends_on"][needed]["condition"], "service_healthy",
            "{needed}"
        );
    }
    assert!(switchboard["volumes"][0]
        .as_str()
        .unwrap()
        .ends_with(":/data"));

    // The files the stack mounts are in the repository.
    for service in ["prometheus", "grafana"] {
        for mount in compose["services"][service]["volumes"]
            .as_sequence()
            .unwrap()
        {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            if let Some(path) = source.strip_prefix("./") {
                let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
                assert!(
                    std::path::Path::new(&full).exists(),
                    "{service} mounts missing {path}"
                );
            }
        }
    }
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for name in [
        "switchboard-data",
        "postgres-data",
        "redis-data",
        "qdrant-data",
        "prometheus-data",
        "grafana-data",
    ] {
        assert!(declared.contains(name), "volume {name}");
    }
}

#[test]
fn the_image_builds_in_stages_and_runs_unprivileged() {
    let dockerfile = file("Dockerfile");
    assert_eq!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        2
    );
    assert!(
        dockerfile.contains("--locked"),
        "the image builds from Cargo.lock"
    );
    // The image ships what the load benchmark measures.
    assert!(dockerfile.contains("cargo build --profile production"));
    assert!(dockerfile.contains("COPY --from=build /src/target/production/switchboard"));
    assert!(file("bench/loadtest.sh").contains("cargo build --profile production"));
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "root");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"));
    // Everything the release build compiles in (sources, migrations, the dashboard's files).
    for folder in ["actors", "supervisors", "src", "migrations", "web"] {
        assert!(
            dockerfile.contains(&format!("COPY {folder} {folder}")),
            "the build stage copies {folder}/"
        );
    }
}

#[test]
fn grafana_provisions_prometheus_under_the_uid_every_dashboard_uses() {
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    assert_eq!(source["url"], "http://prometheus:9090");
    let uid = source["uid"].as_str().unwrap();
    let dir = format!("{}/grafana/dashboards", env!("CARGO_MANIFEST_DIR"));
    let mut titles = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        titles.insert(board["title"].as_str().unwrap().to_owned());
        for panel in board["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
        }
    }
    assert_eq!(
        titles,
        BTreeSet::from([
            "switchboard / Latency by stage".to_owned(),
            "switchboard / Overview".to_owned(),
            "switchboard / Providers".to_owned(),
            "switchboard / Runtime".to_owned(),
            "switchboard / Tenants".to_owned(),
        ])
    );
    let providers = yaml("grafana/provisioning/dashboards/switchboard.yml");
    assert_eq!(
        providers["providers"][0]["options"]["path"],
        "/var/lib/grafana/dashboards"
    );
}
