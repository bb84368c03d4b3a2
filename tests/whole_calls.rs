//! Whole phone calls end to end over real sockets: the call simulator plays Twilio (signed
//! webhook, Media Stream in real time, marks, `clear`), the provider emulator plays OpenAI
//! and ElevenLabs, and the server in between is the one `serve` runs.

mod common;

use std::collections::BTreeMap;

use common::{spawn_voice_app, Line, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::emulator::script::ReplyRule;
use switchboard::emulator::{EmulatorScript, Family, Fault};
use switchboard::simulator::{CallReport, CallerTurn};

/// A tenant with one agent on one number, greeting with `first_message`.
async fn line(app: &TestApp, first_message: &str) -> Line {
    let line = app.line().await;
    app.configure_agent(
        &line,
        json!({"first_message": first_message, "system_prompt": "You book test drives."}),
    )
    .await;
    line
}

fn rule(user_contains: &str, text: &str) -> ReplyRule {
    ReplyRule {
        user_contains: Some(user_contains.to_owned()),
        text: Some(text.to_owned()),
        ..ReplyRule::default()
    }
}

/// An emulator script where the caller `from` says `lines`, in order.
fn script(from: &str, lines: &[&str], rules: Vec<ReplyRule>) -> EmulatorScript {
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = BTreeMap::from([(
        from.to_owned(),
        lines.iter().map(|l| l.to_string()).collect(),
    )]);
    script.replies.rules = rules;
    script
}

async fn call(app: &TestApp, from: &str, to: &str, turns: Vec<CallerTurn>) -> CallReport {
    common::simulate_call(&app.base, from, to, turns).await
}

/// The call's transcript as (speaker, text, interrupted), once the call has ended.
async fn transcript(app: &TestApp, line: &Line, call_sid: &str) -> Vec<(String, String, bool)> {
    let record = app.ended_call(&line.owner.tenant_id, call_sid).await;
    record
        .turns
        .into_iter()
        .map(|t| (format!("{:?}", t.speaker), t.text, t.interrupted))
        .collect()
}

/// The last prompt of a conversation turn (after the call, the model is also asked for the
/// call's analysis).
fn last_turn_prompt(emulator: &switchboard::emulator::EmulatorHandle) -> String {
    emulator
        .requests_for(Family::Llm)
        .iter()
        .map(|r| r.body.to_string())
        .rfind(|body| !body.contains(supervisors::call::ANALYSIS_INSTRUCTIONS))
        .expect("the model was asked")
}

#[tokio::test]
async fn a_whole_call_is_heard_answered_and_recorded() {
    let from = "+14155550100";
    let (app, emulator) = spawn_voice_app(
        script(
            from,
            &[
                "I'd like to book a test drive.",
                "Saturday morning, please.",
            ],
            vec![
                rule("test drive", "Sure. Which day works for you?"),
                rule("saturday", "Great, you are booked for Saturday at ten."),
            ],
        ),
        &[],
    )
    .await;
    let line = line(&app, "Thanks for calling Acme Motors.").await;

    let report = call(
        &app,
        from,
        &line.number,
        vec![
            CallerTurn::say("I'd like to book a test drive."),
            CallerTurn::say("Saturday morning, please."),
        ],
    )
    .await;

    assert_eq!(report.turns.len(), 2, "{}", report.to_text());
    let greeting = report.greeting.as_ref().expect("a greeting");
    assert!(greeting.audio_ms > 500, "{}", report.to_text());
    for turn in &report.turns {
        assert!(turn.reply.audio_ms > 500, "{}", report.to_text());
        assert!(
            turn.reply.voice_to_voice_ms.is_some(),
            "{}",
            report.to_text()
        );
        assert!(!turn.reply.interrupted);
    }
    assert_eq!(report.status_callback_status, Some(204));

    let lines = transcript(&app, &line, &report.call_sid).await;
    let said: Vec<(&str, &str)> = lines
        .iter()
        .map(|(who, text, _)| (who.as_str(), text.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            ("Agent", "Thanks for calling Acme Motors."),
            ("Customer", "I'd like to book a test drive."),
            ("Agent", "Sure. Which day works for you?"),
            ("Customer", "Saturday morning, please."),
            ("Agent", "Great, you are booked for Saturday at ten."),
        ]
    );

    // The model was given the agent's instructions and the conversation so far.
    let last = last_turn_prompt(&emulator);
    assert!(last.contains("You book test drives."), "{last}");
    assert!(last.contains("Which day works for you?"), "{last}");
}

#[tokio::test]
async fn barge_in_clears_the_playback_and_keeps_only_what_the_caller_heard() {
    let from = "+14155550101";
    let long_reply = "We have three cars in stock today. The first is a red sedan with a sunroof. \
        The second is a blue pickup with a long bed. The third is a green hatchback.";
    let (app, emulator) = spawn_voice_app(
        script(
            from,
            &["What cars do you have?", "Wait, just the red one."],
            vec![
                rule("what cars", long_reply),
                rule("red one", "The red sedan it is."),
            ],
        ),
        &[],
    )
    .await;
    let line = line(&app, "Hello.").await;

    let report = call(
        &app,
        from,
        &line.number,
        vec![
            CallerTurn::say("What cars do you have?"),
            CallerTurn::say("Wait, just the red one.").barge_in_after_ms(3_000),
        ],
    )
    .await;

    assert!(report.clears >= 1, "{}", report.to_text());
    assert!(report.turns[0].reply.interrupted, "{}", report.to_text());
    assert!(report.turns[1].barged_in, "{}", report.to_text());

    let lines = transcript(&app, &line, &report.call_sid).await;
    let (_, heard, interrupted) = lines
        .iter()
        .find(|(who, text, _)| who == "Agent" && text.starts_with("We have"))
        .unwrap_or_else(|| panic!("the interrupted reply is on record: {lines:?}"))
        .clone();
    assert!(interrupted, "{lines:?}");
    assert!(heard.contains("three cars"), "{heard}");
    assert!(!heard.contains("green hatchback"), "{heard}");

    // The model's next prompt holds only what the caller heard of the cut reply.
    let last = last_turn_prompt(&emulator);
    assert!(last.contains("red one"), "{last}");
    assert!(!last.contains("green hatchback"), "{last}");
}

#[tokio::test]
async fn a_failing_model_gets_an_apology_and_the_next_turn_is_answered() {
    let from = "+14155550102";
    let (app, emulator) = spawn_voice_app(
        script(
            from,
            &["Are you open today?", "Are you open tomorrow?"],
            vec![rule("tomorrow", "Yes, from nine to five.")],
        ),
        &["--provider-timeout-ms", "1500"],
    )
    .await;
    let line = line(&app, "Hello.").await;
    emulator.set_fault(Family::Llm, Some(Fault::status(503)));

    let to = line.number.clone();
    let caller = {
        let base = app.base.clone();
        tokio::spawn(async move {
            let turns = vec![
                CallerTurn::say("Are you open today?"),
                CallerTurn::say("Are you open tomorrow?"),
            ];
            common::simulate_call(&base, from, &to, turns).await
        })
    };
    // The model keeps failing until the apology is on its way to the caller; then it
    // recovers, mid-call, before the caller's next line.
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !emulator.requests_for(Family::Tts).iter().any(|r| {
            r.body.to_string().contains("orry")
                || r.messages.iter().any(|m| m.to_string().contains("orry"))
        }) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the failed turn is answered with a spoken apology");
    emulator.set_fault(Family::Llm, None);

    let report = caller.await.unwrap();
    assert_eq!(report.turns.len(), 2, "{}", report.to_text());
    assert!(report.turns[0].reply.audio_ms > 0, "{}", report.to_text());
    let lines = transcript(&app, &line, &report.call_sid).await;
    let said: Vec<&str> = lines.iter().map(|(_, text, _)| text.as_str()).collect();
    let apology = said.iter().position(|t| t.contains("orry"));
    let answer = said.iter().position(|t| *t == "Yes, from nine to five.");
    assert!(
        matches!((apology, answer), (Some(a), Some(b)) if a < b),
        "an apology, then the next turn answered, in one call: {said:?}"
    );
}

#[tokio::test]
async fn a_stalled_model_times_out_into_an_apology() {
    let from = "+14155550103";
    let (app, emulator) = spawn_voice_app(
        script(from, &["Hello?"], vec![]),
        &["--provider-timeout-ms", "1000"],
    )
    .await;
    let line = line(&app, "Hi.").await;
    emulator.set_fault(Family::Llm, Some(Fault::stall()));

    let report = call(&app, from, &line.number, vec![CallerTurn::say("Hello?")]).await;
    let reply = &report.turns[0].reply;
    assert!(reply.audio_ms > 0, "{}", report.to_text());
    let v2v = reply.voice_to_voice_ms.expect("the apology plays");
    assert!(
        (1_000..10_000).contains(&v2v),
        "the apology comes after the 1 s timeout, not after the 60 s stall: {v2v} ms"
    );
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_all_complete_with_their_own_transcripts() {
    const CALLS: usize = 50;
    let callers: Vec<String> = (0..CALLS).map(|i| format!("+1415555{i:04}")).collect();
    let mut emulator_script = EmulatorScript::instant();
    emulator_script.transcripts.by_prompt = callers
        .iter()
        .enumerate()
        .map(|(i, from)| (from.clone(), vec![format!("My code is A{i}Z.")]))
        .collect();
    emulator_script.replies.rules = (0..CALLS)
        .map(|i| rule(&format!("a{i}z"), &format!("Code A{i}Z is confirmed.")))
        .collect();
    let (app, _emulator) = spawn_voice_app(emulator_script, &[]).await;
    let line = line(&app, "Hello.").await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"concurrent_call_limit": CALLS}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let app = std::sync::Arc::new(app);
    let calls: Vec<_> = callers
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let app = app.clone();
            let from = from.clone();
            let to = line.number.clone();
            tokio::spawn(async move {
                call(
                    &app,
                    &from,
                    &to,
                    vec![CallerTurn::say(format!("My code is A{i}Z."))],
                )
                .await
            })
        })
        .collect();
    let mut reports = Vec::new();
    for call in calls {
        reports.push(call.await.expect("the call task finished"));
    }

    let tenant = line.owner.tenant_id.parse().unwrap();
    let mut overhead = Vec::new();
    let mut voice_to_voice = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.turns.len(), 1, "{}", report.to_text());
        let lines = transcript(&app, &line, &report.call_sid).await;
        let texts: Vec<&str> = lines.iter().map(|(_, text, _)| text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Hello.",
                &format!("My code is A{i}Z."),
                &format!("Code A{i}Z is confirmed.")
            ],
            "call {i} got another caller's words"
        );
        let call = app
            .store
            .call_by_sid(tenant, &report.call_sid)
            .await
            .unwrap();
        let record = app.store.call_record(tenant, call).await.unwrap();
        let t = record.turns.last().unwrap().timings;
        if let (Some(v2v), Some(runtime)) = (t.voice_to_voice_ms, t.runtime_overhead_ms()) {
            voice_to_voice.push(v2v);
            overhead.push(runtime);
        }
    }
    assert_eq!(overhead.len(), CALLS, "every reply has its timings");
    overhead.sort_unstable();
    voice_to_voice.sort_unstable();
    // Figures for the record, not assertions: this machine is shared and noisy.
    eprintln!(
        "{CALLS} concurrent calls: runtime overhead p50 {} ms, p99 {} ms; server voice-to-voice p50 {} ms, p99 {} ms (emulated providers at zero latency)",
        percentile(&overhead, 50.0),
        percentile(&overhead, 99.0),
        percentile(&voice_to_voice, 50.0),
        percentile(&voice_to_voice, 99.0),
    );
}
