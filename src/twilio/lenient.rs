//! Serde helpers for numbers that Twilio writes as JSON strings.
//!
//! Twilio's real Media Streams traffic carries `"sequenceNumber":"1"`, `"chunk":"1"` and
//! `"timestamp":"52"` as strings, while its documentation and most re-implementations (our
//! own call simulator included, if it is careless) use numbers. PROTOCOLS.md §3.1 asks us to
//! accept both, so every numeric wire field goes through [`uint`] or [`opt_uint`].

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// Deserializes an unsigned integer written either as a JSON number (`52`) or as a string
/// of decimal digits (`"52"`), so a field parses the same whichever form Twilio picks.
///
/// Surrounding whitespace in the string form is tolerated; signs, fractions and exponents are
/// not, because no Twilio counter has them and accepting them would hide a corrupt message.
pub fn uint<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(UintVisitor(PhantomData))
}

/// Like [`uint`], for a field that may also be `null` or absent (pair it with
/// `#[serde(default)]`).
pub fn opt_uint<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(OptUintVisitor(PhantomData))
}

/// Deserializes a short text field that may arrive as a JSON string or as a bare number
/// (a DTMF `digit` of `7` rather than `"7"`), always yielding the text.
pub fn string<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(StringVisitor)
}

/// Serializes an unsigned integer as a JSON string, the way Twilio itself writes counters,
/// so messages we produce as Twilio (in the call simulator) look like the real capture.
pub fn as_string<S, T>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    T: fmt::Display,
{
    serializer.collect_str(value)
}

struct UintVisitor<T>(PhantomData<T>);

fn convert<T: TryFrom<u64>, E: de::Error>(v: u64) -> Result<T, E> {
    T::try_from(v).map_err(|_| E::custom(format_args!("number {v} is out of range")))
}

impl<T: TryFrom<u64>> Visitor<'_> for UintVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an unsigned integer, as a number or a string of digits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        convert(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom(format_args!("expected a non-negative number, got {v}")))?;
        convert(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let digits = v.trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        let n = digits
            .parse::<u64>()
            .map_err(|_| E::custom(format_args!("number {digits} is out of range")))?;
        convert(n)
    }
}

struct OptUintVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> Visitor<'_> for OptUintVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an unsigned integer, a string of digits, or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        UintVisitor(PhantomData).visit_u64(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        UintVisitor(PhantomData).visit_i64(v).map(Some)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        UintVisitor(PhantomData).visit_str(v).map(Some)
    }
}

struct StringVisitor;

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Counter {
        #[serde(deserialize_with = "super::uint")]
        n: u32,
        #[serde(default, deserialize_with = "super::opt_uint")]
        maybe: Option<u64>,
        #[serde(default, deserialize_with = "super::string")]
        text: String,
    }

    fn parse(json: &str) -> Result<Counter, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_and_digit_strings_parse_the_same() {
        assert_eq!(parse(r#"{"n":52}"#).unwrap().n, 52);
        assert_eq!(parse(r#"{"n":"52"}"#).unwrap().n, 52);
        assert_eq!(parse(r#"{"n":" 7 "}"#).unwrap().n, 7);
    }

    #[test]
    fn optional_counters_may_be_null_absent_or_either_form() {
        assert_eq!(parse(r#"{"n":1}"#).unwrap().maybe, None);
        assert_eq!(parse(r#"{"n":1,"maybe":null}"#).unwrap().maybe, None);
        assert_eq!(parse(r#"{"n":1,"maybe":"9"}"#).unwrap().maybe, Some(9));
        assert_eq!(parse(r#"{"n":1,"maybe":9}"#).unwrap().maybe, Some(9));
    }

    #[test]
    fn text_fields_accept_bare_numbers() {
        assert_eq!(parse(r#"{"n":1,"text":7}"#).unwrap().text, "7");
        assert_eq!(parse(r##"{"n":1,"text":"#"}"##).unwrap().text, "#");
    }

    #[test]
    fn garbage_negative_and_out_of_range_counters_are_errors() {
        assert!(parse(r#"{"n":"abc"}"#).is_err());
        assert!(parse(r#"{"n":""}"#).is_err());
        assert!(parse(r#"{"n":-1}"#).is_err());
        assert!(parse(r#"{"n":"-1"}"#).is_err());
        assert!(parse(r#"{"n":1.5}"#).is_err());
        assert!(parse(r#"{"n":5000000000}"#).is_err());
        assert!(parse(r#"{"n":"99999999999999999999999"}"#).is_err());
    }
}
