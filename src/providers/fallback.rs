//! Model fallback: a [`LanguageModel`] that tries the request's model, then each of its
//! `fallback_models` in order, on the same port, when one fails before it has said anything.
//!
//! Only failures a different model may not share are retried: `Unavailable` (the model is
//! overloaded, rate-limited or erroring) and `TimedOut` (it did not start answering in time).
//! `Refused` means the request itself is wrong (a bad key, a prompt too long, a refused
//! input): every model would refuse it, so it is returned at once. Once a model has yielded a
//! delta the reply belongs to it, and a later failure ends the stream as it would without a
//! fallback: the caller has heard its beginning, and starting another model's reply over it
//! would make the agent say two different things.

use std::sync::Arc;

use actors::ports::{LanguageModel, LlmRequest, LlmStream, PortError, PortResult};
use async_trait::async_trait;
use futures::StreamExt;

/// Falls back to the request's `fallback_models` when its model fails before its first delta.
pub struct FallbackLlm {
    /// The port every attempt goes to (the OpenAI-compatible endpoint), with one model each.
    inner: Arc<dyn LanguageModel>,
}

impl FallbackLlm {
    /// Tries each model of a request on `inner`.
    pub fn new(inner: Arc<dyn LanguageModel>) -> Self {
        Self { inner }
    }
}

/// Whether another model may succeed where this failure happened.
fn worth_another_model(error: &PortError) -> bool {
    matches!(error, PortError::Unavailable(_) | PortError::TimedOut(_))
}

#[async_trait]
impl LanguageModel for FallbackLlm {
    /// Returns the first model's stream that starts well. For every model but the last, the
    /// first delta is awaited here (it would be awaited by the caller next anyway, so this
    /// adds no latency) and handed back at the head of the stream.
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
        let LlmRequest {
            model,
            messages,
            tools,
            fallback_models,
        } = request;
        // The models in the order they are tried, each once: the last is answered whatever
        // it says, every earlier one only when it starts well.
        let mut earlier = Vec::new();
        let mut last = model;
        for fallback in fallback_models {
            if fallback != last && !earlier.contains(&fallback) {
                earlier.push(std::mem::replace(&mut last, fallback));
            }
        }
        let attempt = |model: String| LlmRequest {
            model,
            messages: messages.clone(),
            tools: tools.clone(),
            fallback_models: Vec::new(),
        };
        for model in earlier {
            let error = match self.inner.stream(attempt(model.clone())).await {
                Err(error) => error,
                Ok(mut stream) => match stream.next().await {
                    Some(Err(error)) => error,
                    Some(Ok(first)) => {
                        return Ok(futures::stream::once(async move { Ok(first) })
                            .chain(stream)
                            .boxed())
                    }
                    None => return Ok(futures::stream::empty().boxed()),
                },
            };
            if !worth_another_model(&error) {
                return Err(error);
            }
            tracing::warn!(%model, %error, "language model failed before answering; trying the next model");
        }
        // The last attempt takes the prompt itself: with no fallbacks, nothing is copied.
        self.inner
            .stream(LlmRequest {
                model: last,
                messages,
                tools,
                fallback_models: Vec::new(),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use actors::ports::{ChatMessage, LlmDelta};

    use super::*;

    /// A model port whose answer depends on the model asked for, and which remembers the
    /// models asked for in order.
    struct ByModel {
        asked: Mutex<Vec<String>>,
        answer: fn(&str) -> PortResult<Vec<PortResult<LlmDelta>>>,
    }

    #[async_trait]
    impl LanguageModel for ByModel {
        async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
            assert!(
                request.fallback_models.is_empty(),
                "each attempt is one model"
            );
            self.asked.lock().unwrap().push(request.model.clone());
            let items = (self.answer)(&request.model)?;
            Ok(futures::stream::iter(items).boxed())
        }
    }

    fn request(model: &str, fallbacks: &[&str]) -> LlmRequest {
        LlmRequest {
            model: model.to_owned(),
            messages: vec![ChatMessage::User("Hello".to_owned())],
            tools: Vec::new(),
            fallback_models: fallbacks.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    async fn run(
        answer: fn(&str) -> PortResult<Vec<PortResult<LlmDelta>>>,
        request: LlmRequest,
    ) -> (PortResult<Vec<PortResult<LlmDelta>>>, Vec<String>) {
        let inner = Arc::new(ByModel {
            asked: Mutex::new(Vec::new()),
            answer,
        });
        let llm = FallbackLlm::new(inner.clone());
        let result = match llm.stream(request).await {
            Ok(stream) => Ok(stream.collect().await),
            Err(error) => Err(error),
        };
        let asked = inner.asked.lock().unwrap().clone();
        (result, asked)
    }

    fn text(word: &str) -> PortResult<LlmDelta> {
        Ok(LlmDelta::Text(word.to_owned()))
    }

    #[tokio::test]
    async fn an_unavailable_primary_falls_back_in_order_until_one_answers() {
        let (result, asked) = run(
            |model| match model {
                "primary" => Err(PortError::Unavailable("503".into())),
                "second" => Ok(vec![Err(PortError::TimedOut(Duration::from_secs(15)))]),
                _ => Ok(vec![text("Hi"), text(" there")]),
            },
            request("primary", &["second", "third"]),
        )
        .await;
        assert_eq!(result, Ok(vec![text("Hi"), text(" there")]));
        assert_eq!(asked, ["primary", "second", "third"]);
    }

    #[tokio::test]
    async fn a_refusal_is_not_tried_on_another_model() {
        let (result, asked) = run(
            |_| Err(PortError::Refused("prompt too long".into())),
            request("primary", &["second"]),
        )
        .await;
        assert_eq!(result, Err(PortError::Refused("prompt too long".into())));
        assert_eq!(asked, ["primary"]);
    }

    #[tokio::test]
    async fn a_failure_after_the_first_delta_ends_that_reply_without_falling_back() {
        let (result, asked) = run(
            |_| Ok(vec![text("Hi"), Err(PortError::Unavailable("cut".into()))]),
            request("primary", &["second"]),
        )
        .await;
        assert_eq!(
            result,
            Ok(vec![text("Hi"), Err(PortError::Unavailable("cut".into()))])
        );
        assert_eq!(asked, ["primary"]);
    }

    #[tokio::test]
    async fn the_last_models_failure_is_the_answer_and_repeats_are_tried_once() {
        let (result, asked) = run(
            |model| Err(PortError::Unavailable(model.to_owned())),
            request("primary", &["primary", "second", "second"]),
        )
        .await;
        assert_eq!(result, Err(PortError::Unavailable("second".into())));
        assert_eq!(asked, ["primary", "second"]);
    }

    #[tokio::test]
    async fn without_fallbacks_the_stream_is_the_models_own() {
        let (result, asked) = run(
            |_| Ok(vec![Err(PortError::Unavailable("503".into()))]),
            request("primary", &[]),
        )
        .await;
        assert_eq!(result, Ok(vec![Err(PortError::Unavailable("503".into()))]));
        assert_eq!(asked, ["primary"]);
    }
}
