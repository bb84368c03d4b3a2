//! E.164 phone numbers: the only form a number takes inside switchboard. Twilio sends and
//! expects E.164 (`+14155550100`), and a tenant's number is unique platform-wide in it.

use std::fmt;
use std::str::FromStr;

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    /// E.164 numbers are written with a leading `+`.
    #[error("a phone number must start with + and a country code, like +14155550100")]
    MissingPlus,
    /// Only digits may follow the `+`.
    #[error("a phone number may contain only digits after the +")]
    NotDigits,
    /// E.164 allows 8 to 15 digits in all (country code included) in practice.
    #[error("a phone number has 8 to 15 digits after the +, this one has {0}")]
    BadLength(usize),
    /// No country code starts with 0.
    #[error("a country code cannot start with 0")]
    LeadingZero,
}

/// A phone number in E.164 form: `+`, a country code that does not start with 0, and 8 to
/// 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    /// Checks `s` and keeps it as it is: no reformatting, so what the tenant typed and what
    /// Twilio sends compare equal.
    pub fn parse(s: &str) -> Result<Self, E164Error> {
        let digits = s.strip_prefix('+').ok_or(E164Error::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E164Error::NotDigits);
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(E164Error::BadLength(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(E164Error::LeadingZero);
        }
        Ok(Self(s.to_owned()))
    }

    /// The number as text, `+` included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for E164 {
    type Err = E164Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for E164 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_us_number_is_accepted_as_written() {
        assert_eq!(
            E164::parse("+14155550100").unwrap().as_str(),
            "+14155550100"
        );
    }

    #[test]
    fn malformed_numbers_say_what_is_wrong() {
        assert_eq!(E164::parse("4155550100"), Err(E164Error::MissingPlus));
        assert_eq!(E164::parse("+1 415 555"), Err(E164Error::NotDigits));
        assert_eq!(E164::parse("+1415"), Err(E164Error::BadLength(4)));
        assert_eq!(
            E164::parse("+1234567890123456"),
            Err(E164Error::BadLength(16))
        );
        assert_eq!(E164::parse("+0415555010"), Err(E164Error::LeadingZero));
    }

    #[test]
    fn json_with_a_bad_number_fails_to_deserialize() {
        let err = serde_json::from_str::<E164>("\"555-0100\"").unwrap_err();
        assert!(err.to_string().contains("must start with +"), "{err}");
    }
}
