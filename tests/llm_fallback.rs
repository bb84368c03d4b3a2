//! Fallback models on the OpenAI-compatible endpoint: the fallback wrapper over the real chat
//! adapter against the provider emulator (one model down, the next answering; a refusal not
//! tried elsewhere), then a whole phone call of an agent whose model is down, through the
//! server's own wiring.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actors::ports::{ChatMessage, LanguageModel, LlmDelta, LlmRequest, PortError};
use common::{spawn_voice_app, unique_number};
use futures::StreamExt;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use switchboard::emulator::script::ReplyRule;
use switchboard::emulator::{Emulator, EmulatorHandle, EmulatorScript, Family, Fault};
use switchboard::providers::fallback::FallbackLlm;
use switchboard::providers::openai::{OpenAiClient, OpenAiConfig, OpenAiLlm};
use switchboard::simulator::CallerTurn;
use tokio::net::TcpListener;

async fn start() -> EmulatorHandle {
    let mut script = EmulatorScript::instant();
    script.replies.default = "Happy to help.".to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn model(emu: &EmulatorHandle) -> FallbackLlm {
    let mut config = OpenAiConfig::new(SecretString::from("sk-test-fallback"));
    config.base_url = emu.openai_base_url();
    config.timeout = Duration::from_secs(5);
    let client = OpenAiClient::new(config).unwrap();
    FallbackLlm::new(Arc::new(OpenAiLlm::new(client)))
}

fn request(model: &str, fallbacks: &[&str]) -> LlmRequest {
    LlmRequest {
        model: model.to_owned(),
        messages: vec![ChatMessage::User("Hello?".to_owned())],
        tools: Vec::new(),
        fallback_models: fallbacks.iter().map(|m| (*m).to_owned()).collect(),
    }
}

/// The `model` of every chat completion the emulator received, in order.
fn models_asked(emu: &EmulatorHandle) -> Vec<String> {
    emu.requests_for(Family::Llm)
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn a_model_that_is_down_is_replaced_by_the_next_in_order() {
    let emu = start().await;
    emu.set_model_fault("primary-model", Some(Fault::status(503)));
    emu.set_model_fault("second-model", Some(Fault::status(502)));
    let llm = model(&emu);
    let stream = llm
        .stream(request("primary-model", &["second-model", "third-model"]))
        .await
        .expect("a fallback answers");
    let text: String = stream
        .filter_map(|item| async move {
            match item.expect("a clean stream") {
                LlmDelta::Text(words) => Some(words),
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(text, "Happy to help.");

    let asked = models_asked(&emu);
    assert_eq!(asked.first().map(String::as_str), Some("primary-model"));
    assert_eq!(asked.last().map(String::as_str), Some("third-model"));
    let order: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .fold(Vec::new(), |mut o, m| {
            if o.last() != Some(&m) {
                o.push(m);
            }
            o
        });
    assert_eq!(
        order,
        ["primary-model", "second-model", "third-model"],
        "each model in turn (the adapter may retry one before moving on)"
    );
}

#[tokio::test]
async fn a_refused_request_is_not_sent_to_another_model() {
    let emu = start().await;
    emu.set_model_fault("primary-model", Some(Fault::status(400)));
    let error = match model(&emu)
        .stream(request("primary-model", &["second-model"]))
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("a refusal is an error"),
    };
    assert!(matches!(error, PortError::Refused(_)), "{error}");
    assert_eq!(models_asked(&emu), ["primary-model"]);
}

#[tokio::test]
async fn a_call_is_answered_by_the_fallback_model_when_the_agents_model_is_down() {
    let from = "+14155550188";
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt =
        BTreeMap::from([(from.to_owned(), vec!["Are you open on Sunday?".to_owned()])]);
    script.replies.rules = vec![ReplyRule {
        user_contains: Some("sunday".to_owned()),
        text: Some("No, we are closed on Sundays.".to_owned()),
        ..ReplyRule::default()
    }];
    let (app, emulator) = spawn_voice_app(script, &[]).await;
    emulator.set_model_fault("primary-model", Some(Fault::status(503)));
    let owner = app.register("Acme Motors").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{agent}"),
            &owner.access,
            json!({"llm_model": "primary-model", "llm_fallback_models": ["spare-model"],
                   "first_message": "Hello."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let number = unique_number();
    app.create_number(&owner, &number, &agent).await;

    let report = common::simulate_call(
        &app.base,
        from,
        &number,
        vec![CallerTurn::say("Are you open on Sunday?")],
    )
    .await;
    assert_eq!(report.turns.len(), 1, "{}", report.to_text());
    let spoken = serde_json::to_string(&emulator.requests_for(Family::Tts)).unwrap();
    assert!(
        spoken.contains("closed on Sundays"),
        "the spare model's reply was spoken, not an apology: {}",
        report.to_text()
    );
    let asked = models_asked(&emulator);
    assert_eq!(asked.first().map(String::as_str), Some("primary-model"));
    assert!(
        asked.iter().any(|m| m == "spare-model"),
        "the fallback was asked: {asked:?}"
    );
}
