//! TwiML: the XML documents switchboard answers Twilio's webhooks with, and sends inline when
//! it places, transfers or ends a call over REST.
//!
//! Only the verbs switchboard uses are here: `<Say>`, `<Hangup>`, `<Dial>` (busy fallback
//! and transfer), `<Connect><Stream>` (the bidirectional Media Stream that carries every
//! agent call) and `<Message>` (SMS replies). The output is byte for byte what twilio-python
//! writes for the same document (PROTOCOLS.md §1.1, §4.2), so tests can compare exact strings
//! and Twilio sees nothing it has not seen from its own SDK:
//!
//! - the `<?xml version="1.0" encoding="UTF-8"?>` prolog, then the document on one line;
//! - attribute names in lowerCamel, **sorted alphabetically** (twilio-python sorts them);
//! - empty elements written `<Hangup />`, with a space, as Python's ElementTree does;
//! - text escaped as ElementTree does (`&`, `<`, `>`; quotes stay literal), attribute values
//!   with `"`, tab, CR and LF escaped too.
//!
//! One deliberate difference: characters XML 1.0 forbids (most C0 controls) are dropped rather
//! than written raw, because Twilio rejects a document that is not well-formed and the call
//! would fail on a stray control character in model-generated speech.

use std::fmt;

use actors::domain::E164;

/// The `Content-Type` to serve TwiML with; Twilio's own samples use it.
pub const CONTENT_TYPE: &str = "text/xml";

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Why a TwiML element could not be built. Raised at build time so a bad configuration fails
/// in our tests, not as a Twilio error in the middle of a caller's call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    /// The Media Stream URL is not a URL at all.
    #[error("`{0}` is not a valid Media Stream URL")]
    InvalidStreamUrl(String),
    /// Twilio opens Media Streams over `wss://` only (`ws://` is kept for loopback tests).
    #[error("a Media Stream URL must use wss://, `{0}` does not")]
    StreamUrlNotWss(String),
    /// Twilio does not support a query string on the stream URL; values must travel as
    /// `<Parameter>`s, which come back in `start.customParameters`.
    #[error(
        "a Media Stream URL may not carry a query string (`{0}`); send values as <Parameter>s"
    )]
    StreamUrlHasQuery(String),
}

/// The HTTP method Twilio should use for a callback URL (`method`, `statusCallbackMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: parameters in the query string.
    Get,
    /// `POST`: parameters in a form body; Twilio's default.
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A voice webhook's answer: the verbs Twilio runs in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceResponse {
    verbs: Vec<Node>,
}

impl VoiceResponse {
    /// An empty response, `<Response />`: Twilio hangs up once it has run nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Speaks text with Twilio's text-to-speech: the polite messages for unknown numbers and
    /// busy tenants, spoken without our own TTS. Accepts a `&str` or a configured [`Say`].
    pub fn say(mut self, say: impl Into<Say>) -> Self {
        self.verbs.push(say.into().into_node());
        self
    }

    /// Ends the call.
    pub fn hangup(mut self) -> Self {
        self.verbs.push(Node::new("Hangup"));
        self
    }

    /// Connects the caller to another number: the busy fallback and the transfer to a human.
    pub fn dial(mut self, dial: Dial) -> Self {
        self.verbs.push(dial.into_node());
        self
    }

    /// Opens the bidirectional Media Stream; Twilio runs nothing after it until our server
    /// closes the WebSocket.
    pub fn connect(mut self, connect: Connect) -> Self {
        self.verbs.push(connect.into_node());
        self
    }

    /// The document as Twilio should receive it, prolog included.
    pub fn to_xml(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for VoiceResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_document(f, &self.verbs)
    }
}

/// `<Say>`: text for Twilio's own text-to-speech, with an optional voice and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
}

impl Say {
    /// Speaks `text` in the account's default voice.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            voice: None,
            language: None,
        }
    }

    /// A Twilio voice name such as `Polly.Joanna`, so fallback messages can match the agent.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// A language tag such as `en-US`, for tenants that do not speak English.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    fn into_node(self) -> Node {
        Node::new("Say")
            .attr_opt("voice", self.voice)
            .attr_opt("language", self.language)
            .text(self.text)
    }
}

impl From<&str> for Say {
    fn from(text: &str) -> Self {
        Say::new(text)
    }
}

impl From<String> for Say {
    fn from(text: String) -> Self {
        Say::new(text)
    }
}

/// `<Dial>` to one phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    number: E164,
    caller_id: Option<E164>,
    timeout_secs: Option<u32>,
    action: Option<String>,
    method: Option<Method>,
}

impl Dial {
    /// Dials `number`, presenting the caller's own number (Twilio's default).
    pub fn number(number: E164) -> Self {
        Self {
            number,
            caller_id: None,
            timeout_secs: None,
            action: None,
            method: None,
        }
    }

    /// The number the dialled party sees; it must be one of the account's numbers, so a
    /// transfer can show the tenant's number instead of the caller's.
    pub fn caller_id(mut self, caller_id: E164) -> Self {
        self.caller_id = Some(caller_id);
        self
    }

    /// How long to let the number ring, in seconds (Twilio's default is 30).
    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// A URL Twilio requests when the dialled call ends, to learn whether anyone answered.
    pub fn action(mut self, url: impl Into<String>, method: Method) -> Self {
        self.action = Some(url.into());
        self.method = Some(method);
        self
    }

    fn into_node(self) -> Node {
        Node::new("Dial")
            .attr_opt("callerId", self.caller_id.map(|n| n.as_str().to_owned()))
            .attr_opt("timeout", self.timeout_secs.map(|s| s.to_string()))
            .attr_opt("action", self.action)
            .attr_opt("method", self.method.map(|m| m.as_str().to_owned()))
            .text(self.number.as_str().to_owned())
    }
}

/// `<Connect>` around a bidirectional `<Stream>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    stream: Stream,
    action: Option<String>,
    method: Option<Method>,
}

impl Connect {
    /// Connects the call to `stream`; when the stream ends Twilio hangs up.
    pub fn stream(stream: Stream) -> Self {
        Self {
            stream,
            action: None,
            method: None,
        }
    }

    /// A URL whose TwiML Twilio runs after our server closes the stream, instead of hanging
    /// up (e.g. to carry on with a transfer).
    pub fn action(mut self, url: impl Into<String>, method: Method) -> Self {
        self.action = Some(url.into());
        self.method = Some(method);
        self
    }

    fn into_node(self) -> Node {
        Node::new("Connect")
            .attr_opt("action", self.action)
            .attr_opt("method", self.method.map(|m| m.as_str().to_owned()))
            .child(self.stream.into_node())
    }
}

/// Which audio a `<Stream>` forks. Bidirectional streams (`<Connect>`) support only the
/// inbound track; the others exist for completeness with twilio-python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamTrack {
    /// The caller's audio (Twilio's default).
    Inbound,
    /// The audio Twilio plays to the caller.
    Outbound,
    /// Both directions.
    Both,
}

impl StreamTrack {
    fn as_str(self) -> &'static str {
        match self {
            StreamTrack::Inbound => "inbound_track",
            StreamTrack::Outbound => "outbound_track",
            StreamTrack::Both => "both_tracks",
        }
    }
}

/// `<Stream>`: the WebSocket URL Twilio opens, and the `<Parameter>`s it hands back in
/// `start.customParameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    url: String,
    name: Option<String>,
    track: Option<StreamTrack>,
    status_callback: Option<String>,
    status_callback_method: Option<Method>,
    parameters: Vec<(String, String)>,
}

impl Stream {
    /// A stream to `url`, which must be a `wss://` URL without a query string: Twilio
    /// supports neither another scheme nor a query (PROTOCOLS.md §1.2). Anything the media
    /// handler needs, such as a stream token, goes in a [`Stream::parameter`]. Plain `ws://`
    /// is allowed to a loopback host only, where the call simulator plays Twilio's part.
    pub fn new(url: impl Into<String>) -> Result<Self, TwimlError> {
        let url = url.into();
        let parsed =
            reqwest::Url::parse(&url).map_err(|_| TwimlError::InvalidStreamUrl(url.clone()))?;
        let loopback = parsed.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if parsed.scheme() != "wss" && !(parsed.scheme() == "ws" && loopback) {
            return Err(TwimlError::StreamUrlNotWss(url));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(TwimlError::InvalidStreamUrl(url));
        }
        if parsed.query().is_some() {
            return Err(TwimlError::StreamUrlHasQuery(url));
        }
        Ok(Self {
            url,
            name: None,
            track: None,
            status_callback: None,
            status_callback_method: None,
            parameters: Vec::new(),
        })
    }

    /// A name unique within the call, which Twilio repeats in stream status callbacks.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Which audio to stream (see [`StreamTrack`]).
    pub fn track(mut self, track: StreamTrack) -> Self {
        self.track = Some(track);
        self
    }

    /// Where Twilio posts `stream-started`, `stream-stopped` and `stream-error` events.
    pub fn status_callback(mut self, url: impl Into<String>, method: Method) -> Self {
        self.status_callback = Some(url.into());
        self.status_callback_method = Some(method);
        self
    }

    /// Adds a `<Parameter name value/>`: a value Twilio returns in the stream's `start`
    /// message, the only way to pass data to the WebSocket handler.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((name.into(), value.into()));
        self
    }

    fn into_node(self) -> Node {
        let mut node = Node::new("Stream")
            .attr("url", self.url)
            .attr_opt("name", self.name)
            .attr_opt("track", self.track.map(|t| t.as_str().to_owned()))
            .attr_opt("statusCallback", self.status_callback)
            .attr_opt(
                "statusCallbackMethod",
                self.status_callback_method.map(|m| m.as_str().to_owned()),
            );
        for (name, value) in self.parameters {
            node = node.child(
                Node::new("Parameter")
                    .attr("name", name)
                    .attr("value", value),
            );
        }
        node
    }
}

/// A messaging webhook's answer: zero or more SMS replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingResponse {
    messages: Vec<Node>,
}

impl MessagingResponse {
    /// No reply: `<Response />`, which Twilio takes as "received, nothing to send".
    pub fn new() -> Self {
        Self::default()
    }

    /// Replies with an SMS. Accepts a `&str` body or a configured [`Message`].
    pub fn message(mut self, message: impl Into<Message>) -> Self {
        self.messages.push(message.into().into_node());
        self
    }

    /// The document as Twilio should receive it, prolog included.
    pub fn to_xml(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for MessagingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_document(f, &self.messages)
    }
}

/// `<Message>`: one SMS reply, by default to the sender from the number they wrote to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    body: String,
    to: Option<E164>,
    from: Option<E164>,
    action: Option<String>,
    method: Option<Method>,
}

impl Message {
    /// A reply carrying `body`.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            to: None,
            from: None,
            action: None,
            method: None,
        }
    }

    /// Sends to someone other than the sender (e.g. notifies staff).
    pub fn to_number(mut self, to: E164) -> Self {
        self.to = Some(to);
        self
    }

    /// Sends from another of the account's numbers. (Not named `from`, which would shadow
    /// `From::from` in `Message::from("text")`.)
    pub fn from_number(mut self, from: E164) -> Self {
        self.from = Some(from);
        self
    }

    /// Where Twilio reports the reply's delivery status.
    pub fn action(mut self, url: impl Into<String>, method: Method) -> Self {
        self.action = Some(url.into());
        self.method = Some(method);
        self
    }

    fn into_node(self) -> Node {
        Node::new("Message")
            .attr_opt("to", self.to.map(|n| n.as_str().to_owned()))
            .attr_opt("from", self.from.map(|n| n.as_str().to_owned()))
            .attr_opt("action", self.action)
            .attr_opt("method", self.method.map(|m| m.as_str().to_owned()))
            .text(self.body)
    }
}

impl From<&str> for Message {
    fn from(body: &str) -> Self {
        Message::new(body)
    }
}

impl From<String> for Message {
    fn from(body: String) -> Self {
        Message::new(body)
    }
}

/// One element of the tree: enough XML for TwiML (text first, then child elements, as
/// twilio-python nests them), and nothing a caller could use to write arbitrary markup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            attrs: Vec::new(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    fn attr(mut self, name: &'static str, value: String) -> Self {
        self.attrs.push((name, value));
        self
    }

    fn attr_opt(self, name: &'static str, value: Option<String>) -> Self {
        match value {
            Some(value) => self.attr(name, value),
            None => self,
        }
    }

    fn text(mut self, text: String) -> Self {
        self.text = text;
        self
    }

    fn child(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}", self.name)?;
        let mut attrs: Vec<_> = self.attrs.iter().collect();
        attrs.sort_by_key(|(name, _)| *name);
        for (name, value) in attrs {
            write!(f, " {name}=\"")?;
            write_escaped(f, value, true)?;
            f.write_str("\"")?;
        }
        if self.text.is_empty() && self.children.is_empty() {
            return f.write_str(" />");
        }
        f.write_str(">")?;
        write_escaped(f, &self.text, false)?;
        for child in &self.children {
            child.write(f)?;
        }
        write!(f, "</{}>", self.name)
    }
}

fn write_document(f: &mut fmt::Formatter<'_>, verbs: &[Node]) -> fmt::Result {
    f.write_str(PROLOG)?;
    if verbs.is_empty() {
        return f.write_str("<Response />");
    }
    f.write_str("<Response>")?;
    for verb in verbs {
        verb.write(f)?;
    }
    f.write_str("</Response>")
}

/// Writes `s` escaped as Python's ElementTree escapes text (`in_attribute == false`) or an
/// attribute value, dropping characters XML 1.0 cannot represent.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str, in_attribute: bool) -> fmt::Result {
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let replacement = match c {
            '&' => Some("&amp;"),
            '<' => Some("&lt;"),
            '>' => Some("&gt;"),
            '"' if in_attribute => Some("&quot;"),
            '\r' if in_attribute => Some("&#13;"),
            '\n' if in_attribute => Some("&#10;"),
            '\t' if in_attribute => Some("&#09;"),
            c if !is_xml_char(c) => Some(""),
            _ => None,
        };
        if let Some(replacement) = replacement {
            f.write_str(&s[plain_from..i])?;
            f.write_str(replacement)?;
            plain_from = i + c.len_utf8();
        }
    }
    f.write_str(&s[plain_from..])
}

/// The XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(s: &str) -> E164 {
        E164::parse(s).unwrap()
    }

    // Every expected string below was produced by twilio-python's own `VoiceResponse` /
    // `MessagingResponse` for the same document.

    #[test]
    fn an_empty_voice_response_is_the_self_closing_response() {
        assert_eq!(
            VoiceResponse::new().to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response />"#
        );
    }

    #[test]
    fn say_then_hangup_matches_twilio_python() {
        let xml = VoiceResponse::new()
            .say("Sorry, that number is not in service.")
            .hangup()
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Sorry, that number is not in service.</Say><Hangup /></Response>"#
        );
    }

    #[test]
    fn spoken_text_escapes_markup_but_keeps_quotes_as_elementtree_does() {
        let xml = VoiceResponse::new()
            .say(r#"Tom & Jerry <say> "hi" 'there'"#)
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Tom &amp; Jerry &lt;say&gt; "hi" 'there'</Say></Response>"#
        );
        let all = VoiceResponse::new().say(r#"<&"'>"#).to_xml();
        assert!(all.contains(r#"<Say>&lt;&amp;"'&gt;</Say>"#), "{all}");
    }

    #[test]
    fn injected_markup_cannot_escape_its_element() {
        let xml = VoiceResponse::new()
            .say("</Say><Dial>+19005550100</Dial><Say>")
            .to_xml();
        assert!(!xml.contains("<Dial>"), "{xml}");
        assert_eq!(xml.matches('<').count(), 5, "{xml}");
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped() {
        let xml = VoiceResponse::new().say("a\u{0}b\u{1b}c\td\ne").to_xml();
        assert!(xml.contains("<Say>abc\td\ne</Say>"), "{xml}");
    }

    #[test]
    fn say_attributes_are_sorted_like_twilio_python() {
        let xml = VoiceResponse::new()
            .say(Say::new("Bonjour").voice("Polly.Celine").language("fr-FR"))
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="fr-FR" voice="Polly.Celine">Bonjour</Say></Response>"#
        );
    }

    #[test]
    fn empty_say_is_self_closing() {
        assert_eq!(
            VoiceResponse::new().say("").to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say /></Response>"#
        );
    }

    #[test]
    fn dial_writes_the_number_as_text_and_lower_camel_attributes() {
        let xml = VoiceResponse::new()
            .say("All lines are busy.")
            .dial(
                Dial::number(e164("+14155550123"))
                    .caller_id(e164("+14155550100"))
                    .timeout_secs(20),
            )
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>All lines are busy.</Say><Dial callerId="+14155550100" timeout="20">+14155550123</Dial></Response>"#
        );
        assert_eq!(
            VoiceResponse::new()
                .dial(Dial::number(e164("+14155550123")))
                .to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+14155550123</Dial></Response>"#
        );
    }

    #[test]
    fn connect_stream_matches_the_protocols_example() {
        let stream = Stream::new("wss://example.com/media")
            .unwrap()
            .name("agent")
            .status_callback("https://example.com/stream-status", Method::Post)
            .parameter("tenant", "acme")
            .parameter("from_number", "+14155550100");
        let xml = VoiceResponse::new()
            .connect(
                Connect::stream(stream).action("https://example.com/after-stream", Method::Post),
            )
            .to_xml();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Connect action="https://example.com/after-stream" method="POST">"#,
                r#"<Stream name="agent" statusCallback="https://example.com/stream-status" statusCallbackMethod="POST" url="wss://example.com/media">"#,
                r#"<Parameter name="tenant" value="acme" />"#,
                r#"<Parameter name="from_number" value="+14155550100" />"#,
                r#"</Stream></Connect></Response>"#
            )
        );
    }

    #[test]
    fn a_bare_stream_has_only_its_url() {
        let xml = VoiceResponse::new()
            .connect(Connect::stream(
                Stream::new("wss://sb.example.com/twilio/media").unwrap(),
            ))
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://sb.example.com/twilio/media" /></Connect></Response>"#
        );
    }

    #[test]
    fn parameter_values_are_attribute_escaped() {
        let stream = Stream::new("wss://h.example/m")
            .unwrap()
            .track(StreamTrack::Inbound)
            .parameter("token", "a\"b<c>&d'e\nf");
        let xml = VoiceResponse::new()
            .connect(Connect::stream(stream))
            .to_xml();
        assert!(
            xml.contains(r#"<Parameter name="token" value="a&quot;b&lt;c&gt;&amp;d'e&#10;f" />"#),
            "{xml}"
        );
        assert!(xml.contains(r#"track="inbound_track""#), "{xml}");
    }

    #[test]
    fn a_stream_url_with_a_query_string_is_rejected() {
        assert_eq!(
            Stream::new("wss://h.example/media?token=abc"),
            Err(TwimlError::StreamUrlHasQuery(
                "wss://h.example/media?token=abc".into()
            ))
        );
        assert!(matches!(
            Stream::new("wss://h.example/media?"),
            Err(TwimlError::StreamUrlHasQuery(_))
        ));
    }

    #[test]
    fn a_stream_url_must_be_wss() {
        assert!(matches!(
            Stream::new("https://h.example/media"),
            Err(TwimlError::StreamUrlNotWss(_))
        ));
        assert!(matches!(
            Stream::new("ws://h.example/media"),
            Err(TwimlError::StreamUrlNotWss(_))
        ));
        for simulator in [
            "ws://127.0.0.1:8080/media",
            "ws://localhost/media",
            "ws://[::1]:9/m",
        ] {
            assert!(Stream::new(simulator).is_ok(), "{simulator}");
        }
        assert!(matches!(
            Stream::new("not a url"),
            Err(TwimlError::InvalidStreamUrl(_))
        ));
    }

    #[test]
    fn an_sms_reply_matches_protocols_4_2() {
        assert_eq!(
            MessagingResponse::new()
                .message("Thanks! We got it.")
                .to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks! We got it.</Message></Response>"#
        );
    }

    #[test]
    fn no_sms_reply_is_the_exact_empty_response() {
        assert_eq!(
            MessagingResponse::new().to_xml(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response />"#
        );
    }

    #[test]
    fn message_attributes_are_sorted_and_escaped() {
        let xml = MessagingResponse::new()
            .message(
                Message::new("a&b")
                    .to_number(e164("+14155550100"))
                    .from_number(e164("+14155550199"))
                    .action("https://x/y?a=1&b=\"2\"\n\t", Method::Post),
            )
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message action="https://x/y?a=1&amp;b=&quot;2&quot;&#10;&#09;" from="+14155550199" method="POST" to="+14155550100">a&amp;b</Message></Response>"#
        );
    }
}
