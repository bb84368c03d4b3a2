//! Reading TwiML the way Twilio does, for the call simulator: the server under test answers
//! the voice webhook with a document, and what the simulated call does next depends on its
//! verbs.
//!
//! The builder in [`crate::twilio::twiml`] writes TwiML; this is the other direction, and it
//! reads only what the simulator acts on: `<Say>` (the sentence Twilio would speak),
//! `<Hangup/>`, `<Dial>` (the number dialled, as text or in a `<Number>`, `<Client>` or
//! `<Sip>` noun) and `<Connect><Stream url>` with its `<Parameter name value/>`s. Any other
//! verb (`<Pause>`, `<Play>`, `<Redirect>` …) is returned as [`Verb::Other`] so the caller can
//! skip it and say so, as Twilio would carry on past a verb we do not model. A document that is
//! not well-formed XML, or whose root is not `<Response>`, is an error: Twilio answers such a
//! document with "an application error has occurred" and hangs up.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Twilio refuses TwiML documents larger than 64 KB; so does the simulator, which also keeps
/// a misbehaving server from making it buffer without bound.
pub const MAX_TWIML_BYTES: usize = 64 * 1024;

/// TwiML is four levels deep at most (`Response/Connect/Stream/Parameter`); a document
/// nested deeper than this is refused rather than built into a tree that is costly to drop.
const MAX_DEPTH: usize = 32;

/// Why a webhook answer is not TwiML the simulator can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlParseError {
    /// The document is larger than Twilio accepts.
    #[error("the TwiML document is {0} bytes, more than Twilio's 64 KB limit")]
    TooLarge(usize),
    /// Not well-formed XML (the parser's own message, with its position).
    #[error("the TwiML is not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but not a `<Response>` document.
    #[error("the TwiML root element is <{0}>, not <Response>")]
    NotResponse(String),
    /// The document has no element at all.
    #[error("the TwiML document is empty")]
    Empty,
    /// A `<Stream>` without the `url` Twilio would connect to.
    #[error("<Stream> has no url attribute")]
    StreamWithoutUrl,
    /// A `<Parameter>` without a `name`.
    #[error("<Parameter> has no name attribute")]
    ParameterWithoutName,
}

/// One verb of a `<Response>`, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Say>`: Twilio speaks this text (trimmed) with its own voice.
    Say(String),
    /// `<Hangup/>`: the call ends.
    Hangup,
    /// `<Dial>`: the call is bridged to this number (or client, or SIP address).
    Dial(String),
    /// `<Connect><Stream>`: a bidirectional Media Stream to the server.
    Connect(StreamTarget),
    /// A verb the simulator does not model, by element name (`Connect/ConversationRelay` for a
    /// `<Connect>` around something other than a `<Stream>`).
    Other(String),
}

/// Where a `<Connect><Stream>` points and what it hands back in `start.customParameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The WebSocket URL (`wss://`, or `ws://` on loopback in tests).
    pub url: String,
    /// The stream's `name` attribute, when given.
    pub name: Option<String>,
    /// The `<Parameter>`s, by name; a repeated name keeps its last value, as a JSON object
    /// would.
    pub parameters: BTreeMap<String, String>,
}

/// Parses a voice webhook's answer into its verbs.
pub fn parse(xml: &str) -> Result<Vec<Verb>, TwimlParseError> {
    if xml.len() > MAX_TWIML_BYTES {
        return Err(TwimlParseError::TooLarge(xml.len()));
    }
    let root = read_tree(xml)?;
    if root.name != "Response" {
        return Err(TwimlParseError::NotResponse(root.name));
    }
    root.elements().map(verb).collect()
}

/// Turns one child of `<Response>` into a verb.
fn verb(element: &Element) -> Result<Verb, TwimlParseError> {
    Ok(match element.name.as_str() {
        "Say" => Verb::Say(element.text().trim().to_owned()),
        "Hangup" => Verb::Hangup,
        "Dial" => {
            let noun = element
                .elements()
                .find(|e| matches!(e.name.as_str(), "Number" | "Client" | "Sip"));
            let target = noun.map_or_else(|| element.text(), Element::text);
            Verb::Dial(target.trim().to_owned())
        }
        "Connect" => match element.elements().find(|e| e.name == "Stream") {
            Some(stream) => Verb::Connect(stream_target(stream)?),
            None => {
                let inner = element.elements().next().map(|e| e.name.as_str());
                Verb::Other(match inner {
                    Some(inner) => format!("Connect/{inner}"),
                    None => "Connect".to_owned(),
                })
            }
        },
        other => Verb::Other(other.to_owned()),
    })
}

fn stream_target(stream: &Element) -> Result<StreamTarget, TwimlParseError> {
    let url = stream
        .attr("url")
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(TwimlParseError::StreamWithoutUrl)?;
    let mut parameters = BTreeMap::new();
    for parameter in stream.elements().filter(|e| e.name == "Parameter") {
        let name = parameter
            .attr("name")
            .ok_or(TwimlParseError::ParameterWithoutName)?;
        let value = parameter.attr("value").unwrap_or_default();
        parameters.insert(name.to_owned(), value.to_owned());
    }
    Ok(StreamTarget {
        url: url.to_owned(),
        name: stream.attr("name").map(str::to_owned),
        parameters,
    })
}

/// A parsed element: just enough of a DOM for TwiML, which is small and shallow.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element's own text (not its children's), entities resolved.
    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the whole document into a tree, iteratively and to a bounded depth (a hostile
/// document cannot overflow the stack), and returns its root element.
fn read_tree(xml: &str) -> Result<Element, TwimlParseError> {
    let mut reader = Reader::from_str(xml);
    // Open elements, innermost last; the bottom one is a holder for the root.
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let event = reader.read_event().map_err(|e| {
            TwimlParseError::Xml(format!("{e} (at byte {})", reader.error_position()))
        })?;
        match event {
            Event::Start(start) => {
                if stack.len() > MAX_DEPTH {
                    return Err(TwimlParseError::Xml(format!(
                        "elements are nested more than {MAX_DEPTH} deep"
                    )));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                let done = element(&start)?;
                push_child(&mut stack, Node::Element(done));
            }
            Event::End(_) => {
                // The reader checks that end tags match, so there is an open element here.
                if stack.len() > 1 {
                    if let Some(done) = stack.pop() {
                        push_child(&mut stack, Node::Element(done));
                    }
                }
            }
            Event::Text(text) => push_child(&mut stack, Node::Text(text.xml10_content().into())),
            Event::CData(data) => push_child(&mut stack, Node::Text(data.xml10_content().into())),
            Event::GeneralRef(reference) => {
                let text = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .ok_or_else(|| {
                            TwimlParseError::Xml(format!("unknown entity &{};", &*reference))
                        })?
                        .to_owned(),
                    Err(e) => return Err(TwimlParseError::Xml(e.to_string())),
                };
                push_child(&mut stack, Node::Text(text));
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if stack.len() > 1 {
        let open = stack.last().map(|e| e.name.clone()).unwrap_or_default();
        return Err(TwimlParseError::Xml(format!("<{open}> is never closed")));
    }
    let holder = stack.pop().unwrap_or_default();
    let mut roots = holder.children.into_iter().filter_map(|c| match c {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    });
    roots.next().ok_or(TwimlParseError::Empty)
}

fn push_child(stack: &mut [Element], node: Node) {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(node);
    }
}

fn element(start: &BytesStart<'_>) -> Result<Element, TwimlParseError> {
    let name = start.name().as_ref().to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| TwimlParseError::Xml(e.to_string()))?;
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| TwimlParseError::Xml(e.to_string()))?;
        attributes.push((attribute.key.as_ref().to_owned(), value.into_owned()));
    }
    Ok(Element {
        name,
        attributes,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::twiml::{Connect, Dial, Say, Stream, VoiceResponse};
    use actors::domain::E164;

    #[test]
    fn the_builders_say_and_hangup_read_back() {
        let xml = VoiceResponse::new()
            .say("Sorry, the number you called is not in service. Goodbye.")
            .hangup()
            .to_xml();
        assert_eq!(
            parse(&xml).unwrap(),
            vec![
                Verb::Say("Sorry, the number you called is not in service. Goodbye.".into()),
                Verb::Hangup
            ]
        );
    }

    #[test]
    fn the_builders_connect_stream_reads_back_with_its_parameters() {
        let stream = Stream::new("wss://sb.example.com/twilio/media")
            .unwrap()
            .name("agent")
            .parameter("tenant", "acme & co")
            .parameter("token", "a\"b<c");
        let xml = VoiceResponse::new()
            .say(Say::new("One moment."))
            .connect(Connect::stream(stream))
            .to_xml();
        let verbs = parse(&xml).unwrap();
        assert_eq!(verbs[0], Verb::Say("One moment.".into()));
        let Verb::Connect(target) = &verbs[1] else {
            panic!("not a connect: {verbs:?}");
        };
        assert_eq!(target.url, "wss://sb.example.com/twilio/media");
        assert_eq!(target.name.as_deref(), Some("agent"));
        assert_eq!(target.parameters["tenant"], "acme & co");
        assert_eq!(target.parameters["token"], "a\"b<c");
    }

    #[test]
    fn the_builders_dial_reads_back_as_its_number() {
        let number = E164::parse("+14155550100").unwrap();
        let xml = VoiceResponse::new().dial(Dial::number(number)).to_xml();
        assert_eq!(
            parse(&xml).unwrap(),
            vec![Verb::Dial("+14155550100".into())]
        );
        let nested =
            "<Response><Dial callerId=\"+1\"><Number> +14155550101 </Number></Dial></Response>";
        assert_eq!(
            parse(nested).unwrap(),
            vec![Verb::Dial("+14155550101".into())]
        );
    }

    #[test]
    fn entities_character_references_and_cdata_are_resolved_in_text() {
        let xml = "<Response><Say>Tom &amp; Jerry&#33; <![CDATA[<ok>]]></Say></Response>";
        assert_eq!(
            parse(xml).unwrap(),
            vec![Verb::Say("Tom & Jerry! <ok>".into())]
        );
    }

    #[test]
    fn unknown_verbs_are_returned_by_name_for_the_caller_to_skip() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <Response>
              <Pause length="1"/>
              <Connect><ConversationRelay url="wss://x"/></Connect>
              <Say>Hi</Say>
            </Response>"#;
        assert_eq!(
            parse(xml).unwrap(),
            vec![
                Verb::Other("Pause".into()),
                Verb::Other("Connect/ConversationRelay".into()),
                Verb::Say("Hi".into())
            ]
        );
        assert_eq!(parse("<Response/>").unwrap(), vec![]);
    }

    #[test]
    fn bad_documents_are_errors_naming_the_problem() {
        assert!(matches!(
            parse("<Response><Say>Hi</Response>"),
            Err(TwimlParseError::Xml(_))
        ));
        assert!(matches!(
            parse("<Response><Say>Hi</Say>"),
            Err(TwimlParseError::Xml(_))
        ));
        assert_eq!(
            parse("<html><body/></html>"),
            Err(TwimlParseError::NotResponse("html".into()))
        );
        assert_eq!(parse("   "), Err(TwimlParseError::Empty));
        assert_eq!(parse("just text"), Err(TwimlParseError::Empty));
        assert_eq!(
            parse("<Response><Connect><Stream/></Connect></Response>"),
            Err(TwimlParseError::StreamWithoutUrl)
        );
        assert_eq!(
            parse("<Response><Connect><Stream url=\"ws://h\"><Parameter value=\"v\"/></Stream></Connect></Response>"),
            Err(TwimlParseError::ParameterWithoutName)
        );
        assert!(matches!(
            parse("<Response><Say>&bogus;</Say></Response>"),
            Err(TwimlParseError::Xml(m)) if m.contains("bogus")
        ));
        let huge = format!(
            "<Response><Say>{}</Say></Response>",
            "a".repeat(MAX_TWIML_BYTES)
        );
        assert!(matches!(parse(&huge), Err(TwimlParseError::TooLarge(_))));
    }

    #[test]
    fn deep_nesting_is_refused_and_shallow_nesting_read() {
        let nest = |depth| {
            format!(
                "<Response>{}{}</Response>",
                "<a>".repeat(depth),
                "</a>".repeat(depth)
            )
        };
        assert_eq!(parse(&nest(20)).unwrap(), vec![Verb::Other("a".into())]);
        assert!(matches!(
            parse(&nest(5000)),
            Err(TwimlParseError::Xml(m)) if m.contains("nested")
        ));
    }
}
