//! Sign-up, login, refresh rotation, logout, password reset and invitations, over real HTTP.

mod common;

use common::{assert_problem, spawn_app, spawn_app_with, PASSWORD};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn registering_creates_a_tenant_whose_owner_can_log_in_and_see_themselves() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;

    let (status, me) = app.get("/v1/me", &owner.access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["role"], "owner");
    assert_eq!(me["tenant"]["name"], "Acme Motors");
    assert_eq!(me["tenant"]["timezone"], "UTC");
    assert!(me["user"].get("password_hash").is_none(), "{me}");

    let (status, session) = app.login(&owner.email.to_uppercase(), PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
}

#[tokio::test]
async fn registering_twice_with_one_email_is_a_conflict() {
    let app = spawn_app().await;
    let owner = app.register("First").await;
    let (status, body) = app
        .post(
            "/v1/auth/register",
            None,
            json!({"tenant_name": "Second", "name": "X", "email": owner.email, "password": PASSWORD}),
        )
        .await;
    let body = assert_problem(status, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("email already exists"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_registrations_say_which_field_is_wrong() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"tenant_name": "A", "name": "B", "email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"tenant_name": "A", "name": "B", "email": "a@b.example", "password": "short"}),
            "password",
        ),
        (
            json!({"tenant_name": " ", "name": "B", "email": "a@b.example", "password": PASSWORD}),
            "tenant_name",
        ),
        (
            json!({"tenant_name": "A", "name": "", "email": "a@b.example", "password": PASSWORD}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.post("/v1/auth/register", None, body).await;
        let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem) = app
        .post("/v1/auth/register", None, json!({"tenant_name": "A"}))
        .await;
    let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (s1, wrong) = app.login(&owner.email, "not the password").await;
    let (s2, unknown) = app.login("nobody@nowhere.example", PASSWORD).await;
    assert_problem(s1, &wrong, StatusCode::UNAUTHORIZED);
    assert_problem(s2, &unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["detail"], unknown["detail"]);
}

#[tokio::test]
async fn a_refresh_token_works_once_and_its_reuse_ends_the_whole_session() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;

    let (status, first) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let second_token = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_token, owner.refresh);
    let (status, _) = app
        .get("/v1/me", first["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);

    // The stolen original is replayed: refused, and the family is revoked...
    let (status, body) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    let body = assert_problem(status, &body, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    // ...so even the legitimate successor no longer works.
    let (status, body) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": second_token}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn other_sessions_survive_when_one_is_revoked() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (_, other) = app.login(&owner.email, PASSWORD).await;
    let (status, _) = app
        .post(
            "/v1/auth/logout",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Logging out twice is harmless.
    let (status, _) = app
        .post(
            "/v1/auth/logout",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_password_reset_is_audited_works_once_and_ends_old_sessions() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;

    let (status, _) = app
        .post(
            "/v1/auth/password-reset",
            None,
            json!({"email": owner.email}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app
        .post(
            "/v1/auth/password-reset",
            None,
            json!({"email": "ghost@nowhere.example"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "unknown emails get the same answer"
    );

    let (_, audit) = app.get("/v1/audit-log", &owner.access).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"user.password_reset_requested"),
        "{actions:?}"
    );
    assert!(
        !audit.to_string().contains("token"),
        "the audit log never holds the token: {audit}"
    );

    let token = app
        .last_token(&owner.tenant_id, "user.password_reset_requested")
        .await;
    let new_password = "a brand new passphrase";
    let (status, body) = app
        .post(
            "/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": new_password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app
        .post(
            "/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": "yet another passphrase"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST);

    let (status, _) = app.login(&owner.email, PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (status, _) = app.login(&owner.email, new_password).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "sessions from before the reset are over"
    );
}

#[tokio::test]
async fn a_reset_with_an_unknown_token_or_short_password_is_refused() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/v1/auth/password-reset/confirm",
            None,
            json!({"token": "made-up", "password": PASSWORD}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .post(
            "/v1/auth/password-reset/confirm",
            None,
            json!({"token": "made-up", "password": "short"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_invited_user_cannot_log_in_until_they_set_a_password() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (status, user) = app
        .post(
            "/v1/users",
            Some(&owner.access),
            json!({"email": "New.Hire@Acme.example", "name": "New Hire", "role": "agent"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "new.hire@acme.example");
    assert_eq!(user["active"], false);
    let (status, _) = app.login("new.hire@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = app.last_token(&owner.tenant_id, "user.invited").await;
    let (status, session) = app
        .post(
            "/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["user"]["role"], "agent");
    assert_eq!(session["user"]["active"], true);
}

#[tokio::test]
async fn missing_tampered_unsigned_and_foreign_tokens_are_unauthorized() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let (status, body) = app.call(reqwest::Method::GET, "/v1/me", None, None).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);

    let parts: Vec<&str> = owner.access.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    for token in [tampered.as_str(), unsigned.as_str(), "garbage", ""] {
        let (status, body) = app.get("/v1/me", token).await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED);
    }

    // A token signed by another deployment's secret means nothing here.
    let other = spawn_app().await;
    let stranger = other.register("Elsewhere").await;
    let (status, body) = app.get("/v1/me", &stranger.access).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_token_is_refused_with_a_hint_to_refresh() {
    let app = spawn_app_with(&["--jwt-secret", "a-known-secret-for-this-test-only-000"]).await;
    let owner = app.register("Acme").await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": owner.user_id, "tid": owner.tenant_id, "role": "owner", "iat": now - 1000, "exp": now - 100});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a-known-secret-for-this-test-only-000"),
    )
    .unwrap();
    let (status, body) = app.get("/v1/me", &expired).await;
    let body = assert_problem(status, &body, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn too_many_logins_for_one_email_get_429_with_retry_after() {
    let app = spawn_app_with(&["--login-limit-per-email", "3"]).await;
    let owner = app.register("Acme").await;
    for _ in 0..3 {
        let (status, _) = app.login(&owner.email, "wrong password!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .client
        .post(format!("{}/v1/auth/login", app.base))
        .json(&json!({"email": owner.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another email from the same address is still let through.
    let (status, _) = app.login("someone.else@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn too_many_logins_from_one_address_get_429() {
    let app = spawn_app_with(&["--login-limit-per-address", "4"]).await;
    for i in 0..4 {
        let (status, _) = app.login(&format!("user{i}@acme.example"), PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app.login("user9@acme.example", PASSWORD).await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS);
}
