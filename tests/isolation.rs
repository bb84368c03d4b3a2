//! The security matrix. For every tenant-scoped route, tenant B's token with tenant A's ids
//! gets 404 (or a list without A's rows) and never A's data; a viewer's (and a staff
//! agent's) token on every write route gets 403. The route table is checked against the
//! OpenAPI document, so a new route without a row here fails the suite.

mod common;

use std::collections::BTreeSet;

use actors::ports::{Channel, ConversationStore, HistoryEntry, Speaker};
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
    /// A stream of the caller's own tenant's events that never ends by itself.
    Stream,
}

/// Which roles may use a route.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// Every staff member (reads, and the public routes).
    Anyone,
    /// Owner, admin or agent: writes about customers (leads, calls); a viewer gets 403.
    CustomerRole,
    /// Owner or admin (every other write except sign-in, and the audit log).
    Admin,
}

/// The rows written `true`/`false` are admin-only or open to anyone.
impl From<bool> for Need {
    fn from(admin_only: bool) -> Self {
        if admin_only {
            Need::Admin
        } else {
            Need::Anyone
        }
    }
}

struct Route {
    method: Method,
    path: &'static str,
    kind: Kind,
    /// Who may use it.
    need: Need,
    /// A valid body for the route.
    body: fn(&Ids) -> Option<Value>,
}

/// Tenant A's ids, substituted into paths and bodies.
struct Ids {
    user: String,
    agent: String,
    number: String,
    lead: String,
    callback: String,
    conversation: String,
    document: String,
    call: String,
    webhook: String,
    /// A delivery id (none exists: any id of A's endpoint must be a 404 for B).
    delivery: String,
}

fn none(_: &Ids) -> Option<Value> {
    None
}

fn routes() -> Vec<Route> {
    use Kind::*;
    fn r(
        method: Method,
        path: &'static str,
        kind: Kind,
        need: impl Into<Need>,
        body: fn(&Ids) -> Option<Value>,
    ) -> Route {
        Route {
            method,
            path,
            kind,
            need: need.into(),
            body,
        }
    }
    vec![
        r(Method::GET, "/healthz", Public, false, none),
        r(Method::GET, "/readyz", Public, false, none),
        r(Method::GET, "/openapi.json", Public, false, none),
        r(Method::GET, "/metrics", Public, false, none),
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
        r(Method::POST, "/twilio/sms", Public, false, none),
        r(Method::POST, "/twilio/sms/status", Public, false, none),
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
        r(Method::POST, "/v1/calls", ById, Need::CustomerRole, |ids| {
            Some(json!({"to": "+14155550123", "agent_id": ids.agent}))
        }),
        r(
            Method::POST,
            "/v1/agents/{id}/validate",
            ById,
            false,
            |_| Some(json!({})),
        ),
        r(Method::GET, "/v1/leads", OwnTenant, false, none),
        r(
            Method::POST,
            "/v1/leads",
            OwnTenant,
            Need::CustomerRole,
            |_| Some(json!({"name": "B's lead"})),
        ),
        r(Method::GET, "/v1/leads/{id}", ById, false, none),
        r(
            Method::PATCH,
            "/v1/leads/{id}",
            ById,
            Need::CustomerRole,
            |_| Some(json!({"name": "Hijacked"})),
        ),
        r(
            Method::DELETE,
            "/v1/leads/{id}",
            ById,
            Need::CustomerRole,
            none,
        ),
        r(Method::GET, "/v1/leads/{id}/changes", ById, false, none),
        r(
            Method::POST,
            "/v1/leads/{id}/call",
            ById,
            Need::CustomerRole,
            |_| Some(json!({})),
        ),
        r(Method::GET, "/v1/callbacks", OwnTenant, false, none),
        r(
            Method::POST,
            "/v1/callbacks",
            ById,
            Need::CustomerRole,
            |ids| {
                Some(
                    json!({"to": "+14155550123", "due_at": "2099-01-01T12:00:00Z", "agent_id": ids.agent}),
                )
            },
        ),
        r(Method::GET, "/v1/callbacks/{id}", ById, false, none),
        r(
            Method::POST,
            "/v1/callbacks/{id}/cancel",
            ById,
            Need::CustomerRole,
            |_| Some(json!({})),
        ),
        r(Method::GET, "/v1/conversations", OwnTenant, false, none),
        r(Method::GET, "/v1/conversations/{id}", ById, false, none),
        r(
            Method::POST,
            "/v1/conversations/{id}/messages",
            ById,
            Need::CustomerRole,
            |_| Some(json!({"body": "Hello from B"})),
        ),
        r(
            Method::POST,
            "/v1/conversations/{id}/takeover",
            ById,
            Need::CustomerRole,
            none,
        ),
        r(
            Method::DELETE,
            "/v1/conversations/{id}/takeover",
            ById,
            Need::CustomerRole,
            none,
        ),
        r(
            Method::GET,
            "/v1/knowledge/documents",
            OwnTenant,
            false,
            none,
        ),
        r(
            Method::POST,
            "/v1/knowledge/documents",
            OwnTenant,
            true,
            none,
        ),
        r(
            Method::GET,
            "/v1/knowledge/documents/{id}",
            ById,
            false,
            none,
        ),
        r(
            Method::DELETE,
            "/v1/knowledge/documents/{id}",
            ById,
            true,
            none,
        ),
        r(
            Method::POST,
            "/v1/knowledge/search",
            OwnTenant,
            false,
            |_| Some(json!({"query": "anything"})),
        ),
        r(Method::GET, "/twilio/media", Public, false, none),
        r(Method::GET, "/v1/events", Stream, false, none),
        r(Method::GET, "/v1/calls", OwnTenant, false, none),
        r(Method::GET, "/v1/analytics/summary", OwnTenant, false, none),
        r(Method::GET, "/v1/usage", OwnTenant, false, none),
        r(Method::GET, "/v1/calls/{id}", ById, false, none),
        r(
            Method::POST,
            "/v1/calls/{id}/hangup",
            ById,
            Need::CustomerRole,
            |_| Some(json!({})),
        ),
        r(
            Method::POST,
            "/v1/calls/{id}/transfer",
            ById,
            Need::CustomerRole,
            |_| Some(json!({"to": "+14155550100"})),
        ),
        r(
            Method::POST,
            "/v1/calls/{id}/say",
            ById,
            Need::CustomerRole,
            |_| Some(json!({"text": "One moment please."})),
        ),
        r(
            Method::GET,
            "/v1/calls/{id}/listen",
            ById,
            Need::CustomerRole,
            none,
        ),
        r(Method::GET, "/v1/webhooks", OwnTenant, true, none),
        r(Method::POST, "/v1/webhooks", OwnTenant, true, |_| {
            Some(json!({"url": "https://8.8.8.8/hook", "event_types": ["quota.exceeded"]}))
        }),
        r(Method::GET, "/v1/webhooks/{id}", ById, true, none),
        r(Method::PATCH, "/v1/webhooks/{id}", ById, true, |_| {
            Some(json!({"enabled": false}))
        }),
        r(Method::DELETE, "/v1/webhooks/{id}", ById, true, none),
        r(
            Method::GET,
            "/v1/webhooks/{id}/deliveries",
            ById,
            true,
            none,
        ),
        r(
            Method::POST,
            "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            ById,
            true,
            |_| Some(json!({})),
        ),
        r(Method::POST, "/v1/events/ticket", OwnTenant, false, none),
    ]
}

fn path_for(route: &Route, ids: &Ids) -> String {
    let id = if route.path.starts_with("/v1/users") {
        &ids.user
    } else if route.path.starts_with("/v1/agents") {
        &ids.agent
    } else if route.path.starts_with("/v1/leads") {
        &ids.lead
    } else if route.path.starts_with("/v1/callbacks") {
        &ids.callback
    } else if route.path.starts_with("/v1/conversations") {
        &ids.conversation
    } else if route.path.starts_with("/v1/knowledge") {
        &ids.document
    } else if route.path.starts_with("/v1/calls") {
        &ids.call
    } else if route.path.starts_with("/v1/webhooks") {
        &ids.webhook
    } else {
        &ids.number
    };
    route
        .path
        .replace("{id}", id)
        .replace("{delivery_id}", &ids.delivery)
}

async fn seed(app: &TestApp) -> (Login, Ids) {
    let a = app.register("Tenant A").await;
    let staff = app.add_user(&a, "agent").await;
    let agent = app.create_agent(&a, "A's agent").await;
    let number = app.create_number(&a, &unique_number(), &agent).await;
    let (status, lead) = app
        .post(
            "/v1/leads",
            Some(&a.access),
            json!({"name": "A's lead", "phone": unique_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    let (status, callback) = app
        .post(
            "/v1/callbacks",
            Some(&a.access),
            json!({"to": unique_number(), "due_at": "2099-01-01T12:00:00Z", "agent_id": agent}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{callback}");
    let line = HistoryEntry {
        speaker: Speaker::Customer,
        channel: Channel::Sms,
        text: "A's customer wrote this".to_owned(),
        at_ms: 1_700_000_000_000,
    };
    let tenant = a.tenant_id.parse().unwrap();
    ConversationStore::append(&app.store, tenant, &unique_number(), &line)
        .await
        .unwrap();
    let (_, conversations) = app.get("/v1/conversations", &a.access).await;
    let conversation = conversations["items"][0]["id"].as_str().unwrap().to_owned();
    let document = app
        .store
        .upsert_document(
            tenant,
            switchboard::store::Actor::System,
            &switchboard::store::NewDocument {
                name: "A's price list",
                content_type: "text",
                size_bytes: 5,
                sha256: "00",
            },
        )
        .await
        .unwrap()
        .id
        .to_string();
    let call = actors::domain::CallId::new();
    app.store
        .create_call(
            tenant,
            &switchboard::store::NewCall {
                id: call,
                call_sid: common::call_sid(),
                agent: agent.parse().unwrap(),
                phone_number: number.parse().unwrap(),
                direction: switchboard::store::Direction::Inbound,
                from: unique_number(),
                to: actors::domain::E164::parse(&unique_number()).unwrap(),
            },
        )
        .await
        .unwrap();
    let (status, webhook) = app
        .post(
            "/v1/webhooks",
            Some(&a.access),
            json!({"url": "https://8.8.8.8/hook", "event_types": ["quota.exceeded"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    (
        a,
        Ids {
            call: call.to_string(),
            webhook: webhook["id"].as_str().unwrap().to_owned(),
            delivery: uuid::Uuid::new_v4().to_string(),
            user: staff.user_id,
            agent,
            number,
            lead: lead["id"].as_str().unwrap().to_owned(),
            callback: callback["id"].as_str().unwrap().to_owned(),
            conversation,
            document,
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
    let a_ids = [
        &a.tenant_id,
        &a.user_id,
        &ids.user,
        &ids.agent,
        &ids.number,
        &ids.lead,
        &ids.callback,
        &ids.call,
        &ids.webhook,
    ];

    // B's event stream stays silent while A's records change.
    let mut b_events = common::EventStream::open(&app, "/v1/events", Some(&b.access), &[]).await;
    let (status, _) = app
        .post(
            "/v1/leads",
            Some(&a.access),
            json!({"name": "A's second lead", "phone": unique_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        b_events
            .next(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "tenant B's stream saw tenant A's event"
    );
    let mut cells = 1;
    for route in routes()
        .iter()
        .filter(|r| !matches!(r.kind, Kind::Public | Kind::Stream))
    {
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
    let (_, lead) = app.get(&format!("/v1/leads/{}", ids.lead), &a.access).await;
    assert_eq!(lead["name"], "A's lead");
    let (_, callback) = app
        .get(&format!("/v1/callbacks/{}", ids.callback), &a.access)
        .await;
    assert_eq!(callback["status"], "scheduled", "B could not cancel it");
}

#[tokio::test]
async fn viewers_and_staff_agents_are_forbidden_every_administrative_write() {
    let app = spawn_app().await;
    let (a, ids) = seed(&app).await;
    let viewer = app.add_user(&a, "viewer").await;
    let staff = app.add_user(&a, "agent").await;

    let mut cells = 0;
    // A staff agent may make customer writes; tests of those routes show them succeed.
    for (who, refused) in [
        (&viewer, &[Need::Admin, Need::CustomerRole][..]),
        (&staff, &[Need::Admin][..]),
    ] {
        for route in routes().iter().filter(|r| refused.contains(&r.need)) {
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
        // Reads stay open to them, live events included.
        common::EventStream::open(&app, "/v1/events", Some(&who.access), &[]).await;
        for route in routes().iter().filter(|r| {
            r.kind != Kind::Public
                && r.kind != Kind::Stream
                && r.need == Need::Anyone
                && r.method == Method::GET
        }) {
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
    let (_, leads) = app.get("/v1/leads", &a.access).await;
    assert_eq!(leads["items"].as_array().unwrap().len(), 1, "{leads}");
    assert_eq!(leads["items"][0]["name"], "A's lead");
}
