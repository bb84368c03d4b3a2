//! The security matrix. For every tenant-scoped route, tenant B's token with tenant A's ids
//! gets 404 (or a list without A's rows) and never A's data; a viewer's (and a staff
//! agent's) token on every write route gets 403. The route table is checked against the
//! OpenAPI document, so a new route without a row here fails the suite.

mod common;

use std::collections::BTreeSet;

use common::{spawn_app, unique_number, Login, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How a route relates to tenants.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Needs no token (health, docs, sign-in).
    Public,
    /// Names one resource by id: another tenant's id must be a 404.
    ById,
    /// Acts on the caller's own tenant only (lists, create, settings).
    OwnTenant,
}

struct Route {
    method: Method,
    path: &'static str,
    kind: Kind,
    /// Needs owner or admin (every write except sign-in, and the audit log).
    admin_only: bool,
    /// A valid body for the route.
    body: fn(&Ids) -> Option<Value>,
}

/// Tenant A's ids, substituted into paths and bodies.
struct Ids {
    user: String,
    agent: String,
    number: String,
}

fn none(_: &Ids) -> Option<Value> {
    None
}

fn routes() -> Vec<Route> {
    use Kind::*;
    let r = |method: Method, path, kind, admin_only, body: fn(&Ids) -> Option<Value>| Route {
        method,
        path,
        kind,
        admin_only,
        body,
    };
    vec![
        r(Method::GET, "/healthz", Public, false, none),
        r(Method::GET, "/readyz", Public, false, none),
        r(Method::GET, "/openapi.json", Public, false, none),
        r(Method::POST, "/v1/auth/register", Public, false, none),
        r(Method::POST, "/v1/auth/login", Public, false, none),
        r(Method::POST, "/v1/auth/refresh", Public, false, none),
        r(Method::POST, "/v1/auth/logout", Public, false, none),
        r(Method::POST, "/v1/auth/password-reset", Public, false, none),
        r(
            Method::POST,
            "/v1/auth/password-reset/confirm",
            Public,
            false,
            none,
        ),
        r(Method::POST, "/twilio/voice", Public, false, none),
        r(Method::POST, "/twilio/voice/status", Public, false, none),
        r(Method::GET, "/v1/me", OwnTenant, false, none),
        r(Method::GET, "/v1/tenant", OwnTenant, false, none),
        r(Method::PATCH, "/v1/tenant", OwnTenant, true, |_| {
            Some(json!({"name": "Renamed"}))
        }),
        r(Method::GET, "/v1/audit-log", OwnTenant, true, none),
        r(Method::GET, "/v1/users", OwnTenant, false, none),
        r(Method::POST, "/v1/users", OwnTenant, true, |_| {
            Some(
                json!({"email": format!("x{}@b.example", uuid::Uuid::new_v4().simple()), "name": "X", "role": "viewer"}),
            )
        }),
        r(Method::GET, "/v1/users/{id}", ById, false, none),
        r(Method::PATCH, "/v1/users/{id}", ById, true, |_| {
            Some(json!({"role": "viewer"}))
        }),
        r(Method::DELETE, "/v1/users/{id}", ById, true, none),
        r(Method::GET, "/v1/agents", OwnTenant, false, none),
        r(Method::POST, "/v1/agents", OwnTenant, true, |_| {
            Some(json!({"name": "B's agent"}))
        }),
        r(Method::GET, "/v1/agents/{id}", ById, false, none),
        r(Method::PATCH, "/v1/agents/{id}", ById, true, |_| {
            Some(json!({"name": "Hijacked"}))
        }),
        r(Method::DELETE, "/v1/agents/{id}", ById, true, none),
        r(Method::GET, "/v1/phone-numbers", OwnTenant, false, none),
        r(Method::POST, "/v1/phone-numbers", OwnTenant, true, |ids| {
            Some(json!({"number": unique_number(), "agent_id": ids.agent}))
        }),
        r(Method::GET, "/v1/phone-numbers/{id}", ById, false, none),
        r(Method::PATCH, "/v1/phone-numbers/{id}", ById, true, |_| {
            Some(json!({"label": "Hijacked"}))
        }),
        r(Method::DELETE, "/v1/phone-numbers/{id}", ById, true, none),
        r(Method::POST, "/v1/calls", ById, false, |ids| {
            Some(json!({"to": "+14155550123", "agent_id": ids.agent}))
        }),
        r(Method::GET, "/twilio/media", Public, false, none),
    ]
}

fn path_for(route: &Route, ids: &Ids) -> String {
    let id = if route.path.starts_with("/v1/users") {
        &ids.user
    } else if route.path.starts_with("/v1/agents") {
        &ids.agent
    } else {
        &ids.number
    };
    route.path.replace("{id}", id)
}

async fn seed(app: &TestApp) -> (Login, Ids) {
    let a = app.register("Tenant A").await;
    let staff = app.add_user(&a, "agent").await;
    let agent = app.create_agent(&a, "A's agent").await;
    let number = app.create_number(&a, &unique_number(), &agent).await;
    (
        a,
        Ids {
            user: staff.user_id,
            agent,
            number,
        },
    )
}

#[tokio::test]
async fn every_route_in_the_openapi_document_has_a_row_in_the_matrix() {
    let app = spawn_app().await;
    let (_, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let covered: BTreeSet<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        documented, covered,
        "the matrix and the API must list the same routes"
    );
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_and_its_rows_never_listed() {
    let app = spawn_app().await;
    let (a, ids) = seed(&app).await;
    let b = app.register("Tenant B").await;
    let a_ids = [&a.tenant_id, &a.user_id, &ids.user, &ids.agent, &ids.number];

    let mut cells = 0;
    for route in routes().iter().filter(|r| r.kind != Kind::Public) {
        let (status, body) = app
            .call(
                route.method.clone(),
                &path_for(route, &ids),
                Some(&b.access),
                (route.body)(&ids),
            )
            .await;
        cells += 1;
        let seen = body.to_string();
        match route.kind {
            Kind::ById => assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{} {}: {body}",
                route.method,
                route.path
            ),
            _ => assert!(
                status.is_success() || status == StatusCode::UNPROCESSABLE_ENTITY,
                "{} {}: {status} {body}",
                route.method,
                route.path
            ),
        }
        for id in a_ids {
            assert!(
                !seen.contains(id.as_str()),
                "{} {} leaked tenant A's {id}: {body}",
                route.method,
                route.path
            );
        }
    }
    eprintln!("isolation matrix: {cells} tenant-scoped route cells checked with tenant B's token");

    // Tenant A's data came through untouched.
    let (_, agent) = app
        .get(&format!("/v1/agents/{}", ids.agent), &a.access)
        .await;
    assert_eq!(agent["name"], "A's agent");
    let (_, number) = app
        .get(&format!("/v1/phone-numbers/{}", ids.number), &a.access)
        .await;
    assert_eq!(number["label"], "");
    let (_, user) = app.get(&format!("/v1/users/{}", ids.user), &a.access).await;
    assert_eq!(user["role"], "agent");
    let (_, tenant) = app.get("/v1/tenant", &a.access).await;
    assert_eq!(tenant["name"], "Tenant A");
}

#[tokio::test]
async fn viewers_and_staff_agents_are_forbidden_every_administrative_write() {
    let app = spawn_app().await;
    let (a, ids) = seed(&app).await;
    let viewer = app.add_user(&a, "viewer").await;
    let staff = app.add_user(&a, "agent").await;

    let mut cells = 0;
    for who in [&viewer, &staff] {
        for route in routes().iter().filter(|r| r.admin_only) {
            let (status, body) = app
                .call(
                    route.method.clone(),
                    &path_for(route, &ids),
                    Some(&who.access),
                    (route.body)(&ids),
                )
                .await;
            cells += 1;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {} as {}: {body}",
                route.method,
                route.path,
                who.email
            );
        }
        // Reads stay open to them.
        for route in routes()
            .iter()
            .filter(|r| r.kind != Kind::Public && !r.admin_only && r.method == Method::GET)
        {
            let (status, body) = app
                .call(Method::GET, &path_for(route, &ids), Some(&who.access), None)
                .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{} as {}: {body}",
                route.path,
                who.email
            );
        }
    }
    eprintln!("role matrix: {cells} write-route cells refused");
    let (_, agents) = app.get("/v1/agents", &a.access).await;
    assert_eq!(
        agents["items"].as_array().unwrap().len(),
        1,
        "nothing was written"
    );
}
