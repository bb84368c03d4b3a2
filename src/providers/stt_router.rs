//! The speech-to-text port the runtime is given: it opens each call's session on the
//! provider for the agent's [`SttMode`], so one runtime serves agents of both modes and the
//! engine never learns which adapter is behind a mode.

use std::sync::Arc;

use actors::ports::{CallInfo, SpeechToText, SttMode, SttOptions, SttSession};

/// Sends [`SttMode::Utterance`] agents to one provider and [`SttMode::Streaming`] agents to
/// another (in production `OpenAiStt` and `OpenAiRealtimeStt`).
pub struct SttRouter {
    /// Per-utterance transcription.
    utterance: Arc<dyn SpeechToText>,
    /// Streaming transcription.
    streaming: Arc<dyn SpeechToText>,
}

impl SttRouter {
    /// A router over one provider per mode.
    pub fn new(utterance: Arc<dyn SpeechToText>, streaming: Arc<dyn SpeechToText>) -> Self {
        Self {
            utterance,
            streaming,
        }
    }

    fn provider(&self, mode: SttMode) -> &dyn SpeechToText {
        match mode {
            SttMode::Utterance => self.utterance.as_ref(),
            SttMode::Streaming => self.streaming.as_ref(),
        }
    }
}

impl SpeechToText for SttRouter {
    fn open(&self, call: &CallInfo, options: &SttOptions) -> SttSession {
        self.provider(options.mode).open(call, options)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actors::domain::{AgentId, CallId, TenantId, E164};
    use actors::ports::SttInput;
    use tokio::sync::mpsc;

    use super::*;

    /// A provider that only counts the sessions opened on it.
    #[derive(Default)]
    struct Counting {
        opened: Mutex<Vec<String>>,
    }

    impl SpeechToText for Counting {
        fn open(&self, _call: &CallInfo, options: &SttOptions) -> SttSession {
            self.opened.lock().unwrap().push(options.language.clone());
            let (feed, _inputs) = mpsc::channel::<SttInput>(1);
            let (_events, events) = mpsc::channel(1);
            SttSession {
                feed: Box::new(feed),
                events,
            }
        }
    }

    fn call() -> CallInfo {
        CallInfo {
            call_id: CallId::new(),
            tenant: TenantId::new(),
            agent: AgentId::new(),
            customer: "+14155550100".to_owned(),
            business_number: E164::parse("+14155550199").unwrap(),
        }
    }

    #[test]
    fn each_session_opens_on_the_provider_of_its_agents_mode() {
        let utterance = Arc::new(Counting::default());
        let streaming = Arc::new(Counting::default());
        let router = SttRouter::new(utterance.clone(), streaming.clone());
        let options = |mode, language: &str| SttOptions::new(language, mode);
        router.open(&call(), &options(SttMode::Streaming, "en"));
        router.open(&call(), &options(SttMode::Utterance, "de"));
        router.open(&call(), &options(SttMode::Streaming, "fr"));
        router.open(&call(), &options(SttMode::Utterance, "es"));
        assert_eq!(*streaming.opened.lock().unwrap(), ["en", "fr"]);
        assert_eq!(*utterance.opened.lock().unwrap(), ["de", "es"]);
    }
}
