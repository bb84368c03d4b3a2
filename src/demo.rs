//! `switchboard demo`: the whole product in one command, on the embedded defaults and with no
//! accounts anywhere. It starts the provider emulator (a local stand-in for OpenAI and
//! ElevenLabs), the server on a fresh SQLite file, a demo tenant with an agent and a number,
//! then places a scripted three-turn call through the call simulator (which plays Twilio),
//! with one barge-in, and prints the transcript and a per-turn latency table: each stage as
//! the server measured it, the runtime's own overhead, and the latency the caller heard.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::app::Application;
use crate::emulator::script::ReplyRule;
use crate::emulator::{Emulator, EmulatorScript};
use crate::settings::{Settings, VoiceProviders};
use crate::simulator::{run_call, CallReport, CallScript, CallerTurn, SimulatorConfig};
use actors::ports::{Speaker, TurnRecord};

/// The caller's number; the emulator's scripted transcripts are keyed by it.
const CALLER: &str = "+15555550100";
/// The demo tenant's number.
const BUSINESS_NUMBER: &str = "+15555550199";
/// The demo owner's sign-in.
const OWNER_EMAIL: &str = "owner@demo.example";

/// What the caller says, and whether they cut the agent off (after how many ms of reply).
const CALLER_LINES: [(&str, Option<u64>); 3] = [
    ("Hi, I'd like to book a test drive of the new Civic.", None),
    ("Sorry to cut in, do you have it in blue?", Some(2_500)),
    ("Saturday at ten works. Thanks, bye.", None),
];

/// The agent's scripted answers, chosen by a word of the caller's line.
const REPLIES: [(&str, &str); 3] = [
    (
        "test drive",
        "Happy to help with that. We have the new Civic in stock in red, silver and blue. \
         Test drives run every day this week from nine in the morning until six in the evening. \
         Which day works best for you?",
    ),
    (
        "blue",
        "Yes, we have a blue one ready. Would Saturday at ten work for you?",
    ),
    (
        "saturday",
        "You're booked for Saturday at ten. See you then, goodbye!",
    ),
];

/// Runs the demo; with `keep`, leaves the server running after the call.
pub async fn run(mut settings: Settings, keep: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let demo_dir = settings.data_dir.join("demo");
    std::fs::create_dir_all(&demo_dir)
        .with_context(|| format!("creating {}", demo_dir.display()))?;
    let database = demo_dir.join("switchboard-demo.db");
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", database.display()));
    }

    step(
        out,
        "starting the provider emulator (a local stand-in for OpenAI and ElevenLabs)",
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emulator = Emulator::start(listener, emulator_script());

    let twilio_token = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    settings.database_url = format!("sqlite://{}?mode=rwc", database.display()).into();
    settings.database_kind = crate::settings::DatabaseKind::Sqlite;
    settings.public_url = None;
    settings.twilio_auth_token = Some(SecretString::from(twilio_token.clone()));
    settings.twilio_rest = None;
    settings.voice = Some(VoiceProviders {
        openai_api_key: "emulated".to_owned().into(),
        openai_base_url: emulator.openai_base_url(),
        openai_stt_model: "gpt-4o-mini-transcribe".to_owned(),
        elevenlabs_api_key: "emulated".to_owned().into(),
        elevenlabs_base_url: emulator.base_url(),
        elevenlabs_model: "eleven_flash_v2_5".to_owned(),
        timeout: Duration::from_secs(8),
    });
    if !keep {
        settings.listen = "127.0.0.1:0".parse()?;
    }

    step(out, "starting the server on SQLite")?;
    let app = Application::build(settings).await?;
    let base = format!("http://{}", app.local_addr());
    let store = app.store();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    step(out, "creating the demo tenant, its agent and its number")?;
    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 16);
    let tenant = create_tenant(&base, &password).await?;

    step(
        out,
        "placing a three-turn call through the call simulator (it plays Twilio)",
    )?;
    let config = SimulatorConfig::new(
        &base,
        SecretString::from(twilio_token),
        CALLER,
        BUSINESS_NUMBER,
    );
    let turns = CALLER_LINES
        .iter()
        .map(|(line, barge_in)| match barge_in {
            Some(ms) => CallerTurn::say(*line).barge_in_after_ms(*ms),
            None => CallerTurn::say(*line),
        })
        .collect();
    let report = run_call(&config, &CallScript::new(turns))
        .await
        .context("the simulated call failed")?;

    let tenant_id = tenant.parse().context("the tenant id")?;
    let call_id = store.call_by_sid(tenant_id, &report.call_sid).await?;
    let record = wait_for_end(&store, tenant_id, call_id).await?;
    writeln!(out)?;
    print_transcript(out, &record.turns)?;
    writeln!(out)?;
    writeln!(
        out,
        "Summary ({}): {}",
        record
            .sentiment
            .map_or("no sentiment".to_owned(), |s| format!("{s:?}")
                .to_lowercase()),
        record.summary.as_deref().unwrap_or("-")
    )?;
    writeln!(out)?;
    print_latency_table(out, &record.turns, &report)?;

    if keep {
        writeln!(out)?;
        writeln!(out, "The server keeps running at {base} (Ctrl-C stops it).")?;
        writeln!(out, "Open the dashboard at {base}/ and sign in as")?;
        writeln!(out, "  {OWNER_EMAIL} with the password {password}")?;
        writeln!(
            out,
            "(the API takes the same at POST {base}/v1/auth/login)."
        )?;
        writeln!(out, "The demo's database is {}.", database.display())?;
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop.send(());
    server.await??;
    emulator.stop().await;
    Ok(())
}

fn step(out: &mut dyn Write, what: &str) -> std::io::Result<()> {
    writeln!(out, "==> {what}")?;
    out.flush()
}

/// The emulator's script: realistic latencies, the caller's lines, the agent's answers.
fn emulator_script() -> EmulatorScript {
    let mut script = EmulatorScript::default();
    script.transcripts.by_prompt = BTreeMap::from([(
        CALLER.to_owned(),
        CALLER_LINES.iter().map(|(l, _)| l.to_string()).collect(),
    )]);
    let analysis = ReplyRule {
        system_contains: Some(supervisors::call::ANALYSIS_INSTRUCTIONS.to_owned()),
        text: Some(
            json!({
                "summary": "A caller booked a test drive of the new Civic in blue for Saturday at ten.",
                "sentiment": "positive",
                "extracted": {},
            })
            .to_string(),
        ),
        ..ReplyRule::default()
    };
    script.replies.rules = std::iter::once(analysis)
        .chain(REPLIES.iter().map(|(word, text)| ReplyRule {
            user_contains: Some(word.to_string()),
            text: Some(text.to_string()),
            ..ReplyRule::default()
        }))
        .collect();
    script
}

/// Signs up the demo owner and sets up the agent and number through the public API, as a
/// user would; returns the tenant id.
async fn create_tenant(base: &str, password: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let session = send(http.post(format!("{base}/v1/auth/register")).json(&json!({
        "tenant_name": "Demo Motors", "name": "Demo Owner",
        "email": OWNER_EMAIL, "password": password,
    })))
    .await?;
    let token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agent = send(
        http.post(format!("{base}/v1/agents")).bearer_auth(&token).json(&json!({
            "name": "Front desk",
            "system_prompt": "You are the friendly front desk of Demo Motors, a car dealership. Keep answers short.",
            "first_message": "Thanks for calling Demo Motors, how can I help?",
        })),
    )
    .await?;
    send(
        http.post(format!("{base}/v1/phone-numbers"))
            .bearer_auth(&token)
            .json(
                &json!({"number": BUSINESS_NUMBER, "agent_id": agent["id"], "label": "Main line"}),
            ),
    )
    .await?;
    Ok(session["user"]["tenant_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the API answered {status}: {body}");
    }
    Ok(body)
}

async fn wait_for_end(
    store: &crate::store::Store,
    tenant: actors::domain::TenantId,
    call: actors::domain::CallId,
) -> anyhow::Result<crate::store::CallRecord> {
    for _ in 0..400 {
        let record = store.call_record(tenant, call).await?;
        if record.end_reason.is_some() && record.summary.is_some() {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("the call and its analysis were not recorded within 10 s")
}

fn print_transcript(out: &mut dyn Write, turns: &[TurnRecord]) -> std::io::Result<()> {
    writeln!(out, "Transcript")?;
    for turn in turns {
        let who = match turn.speaker {
            Speaker::Customer => "caller",
            Speaker::Agent => "agent ",
            Speaker::Staff => "staff ",
        };
        let cut = if turn.interrupted {
            "  [cut off by the caller]"
        } else {
            ""
        };
        writeln!(out, "  {who}  {}{cut}", turn.text)?;
    }
    Ok(())
}

/// One row per caller line: the stages of the agent's answer as the server measured them,
/// the runtime's own share, and the latency the caller heard.
fn print_latency_table(
    out: &mut dyn Write,
    turns: &[TurnRecord],
    report: &CallReport,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Latency per turn, in ms (providers emulated with realistic delays)"
    )?;
    let header = [
        "turn",
        "endpointing",
        "stt",
        "llm first token",
        "llm first sentence",
        "tts first byte",
        "voice-to-voice",
        "runtime",
        "caller heard",
    ];
    writeln!(
        out,
        "  {}",
        header
            .map(|h| format!("{h:>w$}", w = h.len().max(5)))
            .join("  ")
    )?;
    let mut answers = turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.speaker == Speaker::Customer)
        .map(|(i, _)| {
            turns[i + 1..]
                .iter()
                .find(|t| t.speaker != Speaker::Customer)
        });
    for (n, caller_turn) in report.turns.iter().enumerate() {
        let t = answers
            .next()
            .flatten()
            .map(|t| t.timings)
            .unwrap_or_default();
        let cells = [
            Some((n + 1) as u32),
            t.endpointing_ms,
            t.stt_ms,
            t.llm_first_token_ms,
            t.llm_first_sentence_ms,
            t.tts_first_byte_ms,
            t.voice_to_voice_ms,
            t.runtime_overhead_ms(),
            caller_turn
                .reply
                .voice_to_voice_ms
                .and_then(|v| u32::try_from(v).ok()),
        ];
        let row: Vec<String> = cells
            .iter()
            .zip(header)
            .map(|(v, h)| {
                let v = v.map_or("-".to_owned(), |v| v.to_string());
                format!("{v:>w$}", w = h.len().max(5))
            })
            .collect();
        writeln!(out, "  {}", row.join("  "))?;
    }
    writeln!(out, "  voice-to-voice: end of the caller's speech, once endpointing decided it, to the first audio sent.")?;
    writeln!(out, "  runtime: voice-to-voice less stt, llm first sentence and tts first byte: switchboard's own share.")?;
    writeln!(out, "  caller heard: measured by the simulated phone from the last sound of speech, endpointing included.")?;
    Ok(())
}
