//! The `switchboard` binary as an operator runs it: version, migrate, serve, configuration
//! errors, graceful stop, and no secret in its output.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn switchboard(data_dir: &PathBuf) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_clear()
        .env("SWITCHBOARD_DATA_DIR", data_dir)
        .env("RUST_LOG", "info");
    cmd
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("sbcli-{}", uuid::Uuid::new_v4()))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn version_prints_the_package_version() {
    let out = switchboard(&temp_dir()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let out = switchboard(&temp_dir())
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("SWITCHBOARD_LISTEN") && said.contains("nowhere"),
        "{said}"
    );
}

#[test]
fn migrate_creates_the_sqlite_database_and_can_run_again() {
    let dir = temp_dir();
    for _ in 0..2 {
        let out = switchboard(&dir).arg("migrate").output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(dir.join("switchboard.db").exists());
}

#[test]
fn secrets_never_appear_in_the_output_even_when_start_up_fails() {
    let jwt = "jwt-secret-that-must-never-be-printed-0123";
    let out = switchboard(&temp_dir())
        .arg("serve")
        .env("JWT_SECRET", jwt)
        .env(
            "REDIS_URL",
            "redis://:redis-password-never-printed@127.0.0.1:1",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("REDIS_URL"),
        "the failure names what failed: {said}"
    );
    assert!(
        !said.contains(jwt) && !said.contains("redis-password-never-printed"),
        "{said}"
    );
}

#[cfg(unix)]
#[test]
fn serve_starts_on_embedded_defaults_keeps_its_secret_private_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = switchboard(&dir)
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let answer = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/readyz"),
            ])
            .output();
        match answer {
            Ok(out) if out.stdout == b"200" => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    assert!(ready, "the server never became ready: {}", text(&out));
    assert!(
        out.status.success(),
        "a SIGTERM stop is a clean exit: {}",
        text(&out)
    );

    let secret = dir.join("jwt_secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the generated secret is readable by its owner only"
    );
    assert!(std::fs::read_to_string(secret).unwrap().len() >= 32);
}

#[cfg(unix)]
#[test]
fn emulate_serves_the_openai_wire_format_until_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = switchboard(&temp_dir())
        .args(["emulate", "--emulator-listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let out = Command::new("curl")
            .args([
                "-s",
                "-H",
                "authorization: Bearer test-key",
                "-H",
                "content-type: application/json",
            ])
            .args([
                "-d",
                body,
                &format!("http://127.0.0.1:{port}/v1/chat/completions"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("[DONE]") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        answer.contains("chat.completion.chunk") && answer.ends_with("data: [DONE]\n\n"),
        "{answer}"
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("test double"),
        "it says what it is: {}",
        text(&out)
    );
}

#[test]
fn demo_runs_a_whole_call_and_prints_its_transcript_and_latencies() {
    let dir = temp_dir();
    let output = switchboard(&dir)
        .arg("demo")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    for expected in [
        "agent   Thanks for calling Demo Motors, how can I help?",
        "caller  Hi, I'd like to book a test drive of the new Civic.",
        "[cut off by the caller]",
        "caller  Sorry to cut in, do you have it in blue?",
        "agent   You're booked for Saturday at ten. See you then, goodbye!",
        "Summary (positive):",
        "voice-to-voice",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    let rows = stdout
        .lines()
        .filter(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() == 9 && cells.iter().all(|c| c.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(rows, 3, "one latency row per caller turn:\n{stdout}");
}
