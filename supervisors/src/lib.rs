//! The supervision tree of switchboard, in the spirit of Erlang/OTP.
//!
//! ```text
//! Runtime (root supervisor)                          this crate
//! └── TenantSupervisor           one per tenant      this crate: config snapshot, call admission
//!     ├── KnowledgeActor         one per tenant      actors: search and ingest
//!     ├── ConversationActor      one per customer    actors: history across SMS and voice, prompts
//!     └── CallSupervisor         one per live call   this crate: the call's state machine
//!         ├── SttActor                               actors: VAD, endpointing, speech-to-text
//!         ├── LlmActor                               actors: streamed reply, tool calls
//!         └── TtsActor                               actors: sentences to mu-law, marks
//! ```
//!
//! ## Restart policy
//!
//! | supervisor | child | restart type | on too many failures |
//! | --- | --- | --- | --- |
//! | Runtime | TenantSupervisor | transient, lazily: restarted on the tenant's next use | — |
//! | TenantSupervisor | KnowledgeActor | permanent | given up on: calls go on, the knowledge tool says it is unavailable |
//! | TenantSupervisor | ConversationActor | transient, lazily: reloaded from the store on next use | — |
//! | TenantSupervisor | CallSupervisor | temporary: a crashed call is recorded as failed and hung up, never replayed | — |
//! | CallSupervisor | Stt/Llm/Tts actors | permanent for the call's life | the call ends gracefully |
//!
//! Restart intensity defaults to 3 restarts within 60 s ([`restart::RestartPolicy`]). Past
//! it a call says a short apology, then transfers to the agent's fallback number or hangs up,
//! and the failure is recorded on the call.
//!
//! ## One turn of a call
//!
//! ```text
//! caller audio ─► CallSupervisor ─► SttActor ── utterance ended, final transcript ─► CallSupervisor
//!                 ConversationActor ◄── build prompt (task) ────────────────────────────────┤
//!                 LlmActor ◄── generate ◄─────────────────────────────────────────────────────┤
//!                 LlmActor ── sentences, tool calls ─► CallSupervisor ── tools (task) ─► LlmActor
//!                 TtsActor ◄── each sentence ◄── CallSupervisor
//!                 TtsActor ── audio, then a mark per sentence ─► Telephony ── marks echoed ─► CallSupervisor
//! ```
//!
//! ## Guarantees
//!
//! - **Isolation.** A panic in any actor of a call reaches only that call's supervisor; a
//!   crash of a call supervisor reaches only its tenant's supervisor, which records the call
//!   as failed. No other call and no other tenant notices.
//! - **The audio path never waits.** Per frame the media socket's task runs the STT actor's
//!   hearing through the call's `AudioInlet`: it decodes, runs the VAD and hands the frame to
//!   the STT session, with no message, no allocation and no wait; the call hears only when the
//!   caller talks over the agent or stops talking. A frame the hearing fails or panics on
//!   fails the STT actor, as a panic in its mailbox would. Prompt building, tools and records
//!   run in tasks that message the call back; records are written in order by a per-call
//!   writer, so the database is never on the audio path.
//! - **Restarts resume.** A restarted LLM actor is asked again for the reply in progress; a
//!   restarted TTS actor is given again the sentences not yet played. Tasks an actor runs
//!   (model streams, syntheses) die with it, and a panic in one fails the actor like a panic
//!   in its mailbox.
//! - **Speech starts at the first sentence.** The LLM actor splits the stream into sentences
//!   and the TTS actor speaks each as it arrives; a mark after each sentence tells the call
//!   what the caller actually heard.
//! - **Barge-in.** Caller speech over the agent longer than the barge-in minimum (500 ms by
//!   default) cancels the reply's LLM and TTS work, clears the caller's playback buffer and
//!   trims the agent's line in the history to the sentences whose marks came back. Shorter
//!   speech over the agent (a cough, an "mm-hm") neither interrupts nor starts a turn.
//! - **Admission.** A tenant never has more live calls than its limit; the next is refused
//!   with [`tenant::Refusal::AtCapacity`]. While draining every new call is refused and
//!   [`runtime::Runtime::drain`] waits for the live ones up to a deadline.
//! - **Events never slow a call.** The event hub gives each subscriber a bounded queue; a slow
//!   subscriber loses events and is told how many.

pub mod call;
pub mod registry;
pub mod restart;
pub mod retrieval;
pub mod runtime;
pub mod tenant;
pub mod text;
pub mod tools;
