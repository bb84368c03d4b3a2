//! The tenant's own resources: settings, users and roles, agents and phone numbers.

mod common;

use common::{assert_problem, spawn_app, unique_number};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn an_admin_updates_tenant_settings_and_bad_values_are_named() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (status, tenant) = app
        .patch(
            "/v1/tenant",
            &owner.access,
            json!({"name": "Acme Motors", "timezone": "America/Chicago", "concurrent_call_limit": 25,
                   "monthly_minute_quota": 5000, "business_hours": {"mon": [["09:00", "17:30"]]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["name"], "Acme Motors");
    assert_eq!(tenant["timezone"], "America/Chicago");
    assert_eq!(tenant["concurrent_call_limit"], 25);
    assert_eq!(tenant["monthly_minute_quota"], 5000);
    assert_eq!(tenant["business_hours"]["mon"][0][1], "17:30");

    let (_, tenant) = app
        .patch(
            "/v1/tenant",
            &owner.access,
            json!({"monthly_minute_quota": null}),
        )
        .await;
    assert!(tenant["monthly_minute_quota"].is_null(), "{tenant}");
    assert_eq!(tenant["concurrent_call_limit"], 25, "untouched fields stay");

    let bad = [
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"concurrent_call_limit": 0}), "concurrent_call_limit"),
        (
            json!({"business_hours": {"mon": [["18:00", "09:00"]]}}),
            "business_hours",
        ),
        (json!({"name": ""}), "name"),
    ];
    for (body, field) in bad {
        let (status, problem) = app.patch("/v1/tenant", &owner.access, body).await;
        let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let (status, problem) = app
        .patch(
            "/v1/tenant",
            &owner.access,
            json!({"concurrent_call_limit": "many"}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, problem) = app
        .patch("/v1/tenant", &owner.access, json!({"colour": "blue"}))
        .await;
    let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().contains("colour"),
        "unknown fields are named: {problem}"
    );
}

#[tokio::test]
async fn agents_are_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (status, agent) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "Front desk", "system_prompt": "You answer for {{tenant_name}}.",
                   "first_message": "Hi {{customer_name}}!", "language": "en-US", "voice": "21m00Tcm4TlvDq8ikWAM",
                   "enabled_tools": ["transfer_to_human", "search_knowledge", "transfer_to_human"],
                   "transfer_number": "+14155550100"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let id = agent["id"].as_str().unwrap();
    assert_eq!(
        agent["llm_model"], "gpt-4o-mini",
        "defaults fill what was not given"
    );
    assert_eq!(
        agent["enabled_tools"],
        json!(["search_knowledge", "transfer_to_human"])
    );

    let (status, updated) = app
        .patch(
            &format!("/v1/agents/{id}"),
            &owner.access,
            json!({"first_message": "Hello!", "transfer_number": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["first_message"], "Hello!");
    assert!(updated["transfer_number"].is_null());
    assert_eq!(updated["system_prompt"], "You answer for {{tenant_name}}.");

    let (_, list) = app.get("/v1/agents", &owner.access).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let (status, _) = app.delete(&format!("/v1/agents/{id}"), &owner.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get(&format!("/v1/agents/{id}"), &owner.access).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_agents_speech_mode_and_fallback_models_round_trip() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (status, agent) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "Front desk"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    assert_eq!(agent["stt_mode"], "utterance", "per utterance by default");
    assert_eq!(agent["llm_fallback_models"], json!([]));
    let id = agent["id"].as_str().unwrap();

    let (status, updated) = app
        .patch(
            &format!("/v1/agents/{id}"),
            &owner.access,
            json!({"stt_mode": "streaming", "llm_fallback_models": [" gpt-4.1-mini ", "gpt-4o"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, stored) = app.get(&format!("/v1/agents/{id}"), &owner.access).await;
    assert_eq!(stored["stt_mode"], "streaming");
    assert_eq!(
        stored["llm_fallback_models"],
        json!(["gpt-4.1-mini", "gpt-4o"])
    );

    // Fields left out stay; an empty list clears the fallbacks.
    let (_, cleared) = app
        .patch(
            &format!("/v1/agents/{id}"),
            &owner.access,
            json!({"llm_fallback_models": []}),
        )
        .await;
    assert_eq!(cleared["stt_mode"], "streaming");
    assert_eq!(cleared["llm_fallback_models"], json!([]));
}

#[tokio::test]
async fn bad_agent_fields_are_refused_by_name() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let cases = [
        (json!({}), "name"),
        (json!({"name": "A", "language": "English"}), "language"),
        (
            json!({"name": "A", "transfer_number": "555-0100"}),
            "transfer_number",
        ),
        (json!({"name": "A", "stt_mode": "telepathy"}), "stt_mode"),
        (json!({"name": "A", "stt_mode": "Streaming"}), "stt_mode"),
        (
            json!({"name": "A", "llm_fallback_models": ["a", "b", "c", "d"]}),
            "llm_fallback_models",
        ),
        (
            json!({"name": "A", "llm_fallback_models": ["gpt-4o", "gpt-4o"]}),
            "llm_fallback_models",
        ),
        (
            json!({"name": "A", "llm_fallback_models": ["gpt-4o-mini"]}),
            "llm_fallback_models",
        ),
        (
            json!({"name": "A", "llm_fallback_models": ["  "]}),
            "llm_fallback_models",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.post("/v1/agents", Some(&owner.access), body).await;
        let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "A", "enabled_tools": ["launch_rockets"]}),
        )
        .await;
    let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("launch_rockets"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_number_belongs_to_one_tenant_platform_wide() {
    let app = spawn_app().await;
    let acme = app.register("Acme").await;
    let globex = app.register("Globex").await;
    let acme_agent = app.create_agent(&acme, "Front desk").await;
    let globex_agent = app.create_agent(&globex, "Reception").await;
    let number = unique_number();
    app.create_number(&acme, &number, &acme_agent).await;

    let (status, body) = app
        .post(
            "/v1/phone-numbers",
            Some(&globex.access),
            json!({"number": number, "agent_id": globex_agent}),
        )
        .await;
    let body = assert_problem(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"].as_str().unwrap().contains("already in use"),
        "{body}"
    );
}

#[tokio::test]
async fn a_number_cannot_point_at_another_tenants_agent() {
    let app = spawn_app().await;
    let acme = app.register("Acme").await;
    let globex = app.register("Globex").await;
    let globex_agent = app.create_agent(&globex, "Reception").await;
    let (status, foreign) = app
        .post(
            "/v1/phone-numbers",
            Some(&acme.access),
            json!({"number": unique_number(), "agent_id": globex_agent}),
        )
        .await;
    let (_, made_up) = app
        .post(
            "/v1/phone-numbers",
            Some(&acme.access),
            json!({"number": unique_number(), "agent_id": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_problem(status, &foreign, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        foreign["detail"], made_up["detail"],
        "another tenant's agent looks like no agent at all"
    );
}

#[tokio::test]
async fn numbers_are_validated_moved_between_agents_and_removed() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let sales = app.create_agent(&owner, "Sales").await;
    let service = app.create_agent(&owner, "Service").await;
    for bad in ["4155550100", "+1 415 555 0100", "+12", "+01234567890"] {
        let (status, body) = app
            .post(
                "/v1/phone-numbers",
                Some(&owner.access),
                json!({"number": bad, "agent_id": sales}),
            )
            .await;
        let body = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"][0]["field"], "number", "{bad}: {body}");
    }
    let number = unique_number();
    let id = app.create_number(&owner, &number, &sales).await;

    let (status, body) = app
        .delete(&format!("/v1/agents/{sales}"), &owner.access)
        .await;
    let body = assert_problem(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("point them at another agent"),
        "{body}"
    );

    let (status, moved) = app
        .patch(
            &format!("/v1/phone-numbers/{id}"),
            &owner.access,
            json!({"agent_id": service, "label": "Main line"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["agent_id"], service);
    assert_eq!(moved["number"], number);
    let (status, _) = app
        .delete(&format!("/v1/agents/{sales}"), &owner.access)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _) = app
        .delete(&format!("/v1/phone-numbers/{id}"), &owner.access)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.get("/v1/phone-numbers", &owner.access).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn roles_change_but_the_last_owner_stays() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let admin = app.add_user(&owner, "admin").await;

    let (status, body) = app
        .patch(
            &format!("/v1/users/{}", owner.user_id),
            &owner.access,
            json!({"role": "admin"}),
        )
        .await;
    let body = assert_problem(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("at least one owner"),
        "{body}"
    );
    let (status, body) = app
        .delete(&format!("/v1/users/{}", owner.user_id), &owner.access)
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT);

    // An admin can neither touch an owner nor make one.
    let (status, body) = app
        .patch(
            &format!("/v1/users/{}", owner.user_id),
            &admin.access,
            json!({"role": "viewer"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = app
        .patch(
            &format!("/v1/users/{}", admin.user_id),
            &admin.access,
            json!({"role": "owner"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN);

    // With a second owner, the first may step down.
    let (status, promoted) = app
        .patch(
            &format!("/v1/users/{}", admin.user_id),
            &owner.access,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    let (status, demoted) = app
        .patch(
            &format!("/v1/users/{}", owner.user_id),
            &owner.access,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{demoted}");
    // The change applies at once, not when the token expires.
    let (status, body) = app
        .post("/v1/agents", Some(&owner.access), json!({"name": "X"}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN);

    let (status, _) = app
        .delete(&format!("/v1/users/{}", owner.user_id), &admin.access)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/v1/me", &owner.access).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);
    let (_, users) = app.get("/v1/users", &admin.access).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_invited_email_already_on_the_platform_is_a_conflict_and_roles_are_checked() {
    let app = spawn_app().await;
    let acme = app.register("Acme").await;
    let globex = app.register("Globex").await;
    let (status, body) = app
        .post(
            "/v1/users",
            Some(&acme.access),
            json!({"email": globex.email, "name": "X", "role": "agent"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT);
    let (status, body) = app
        .post(
            "/v1/users",
            Some(&acme.access),
            json!({"email": "x@acme.example", "name": "X", "role": "root"}),
        )
        .await;
    let body = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("root"), "{body}");
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_with_who_made_it() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    app.patch(
        &format!("/v1/agents/{agent}"),
        &owner.access,
        json!({"voice": "alloy"}),
    )
    .await;
    app.create_number(&owner, &unique_number(), &agent).await;
    app.patch(
        "/v1/tenant",
        &owner.access,
        json!({"timezone": "Europe/Paris"}),
    )
    .await;

    let (status, log) = app.get("/v1/audit-log?limit=10", &owner.access).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.updated",
            "phone_number.created",
            "agent.updated",
            "agent.created",
            "tenant.registered"
        ]
    );
    assert!(
        items
            .iter()
            .all(|e| e["actor_user_id"] == owner.user_id.as_str()),
        "{log}"
    );
    assert_eq!(items[2]["detail"]["voice"], "alloy");

    let (status, body) = app.get("/v1/audit-log?limit=lots", &owner.access).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST);
}
