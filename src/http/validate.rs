//! Checks of raw request values, each turning a string into the type the store takes or a
//! 422 naming the field. Shared by every route so the same field is judged the same way.

use std::str::FromStr;

use actors::domain::E164;

use super::error::ApiError;
use crate::store::BusinessHours;

/// Trimmed text of `min..=max` characters.
pub fn text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars < min {
        return Err(ApiError::field(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        ));
    }
    if chars > max {
        return Err(ApiError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An email address, lower-cased so that logins match however it was typed.
pub fn email(field: &str, raw: &str) -> Result<String, ApiError> {
    let candidate = raw.trim().to_lowercase();
    let domain_has_dot = candidate
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.contains('.'));
    if candidate.len() > 254
        || !domain_has_dot
        || !email_address::EmailAddress::is_valid(&candidate)
    {
        return Err(ApiError::field(
            field,
            format!("`{}` is not an email address", raw.trim()),
        ));
    }
    Ok(candidate)
}

/// A phone number in E.164.
pub fn e164(field: &str, raw: &str) -> Result<E164, ApiError> {
    E164::parse(raw.trim()).map_err(|e| ApiError::field(field, e.to_string()))
}

/// An IANA timezone name such as `America/Chicago`.
pub fn timezone(field: &str, raw: &str) -> Result<String, ApiError> {
    chrono_tz::Tz::from_str(raw.trim())
        .map(|tz| tz.name().to_owned())
        .map_err(|_| {
            ApiError::field(
                field,
                format!("`{raw}` is not an IANA timezone like America/Chicago"),
            )
        })
}

/// A BCP 47 language tag in the simple forms voice providers accept: `en`, `en-US`, `pt-BR`.
pub fn language(field: &str, raw: &str) -> Result<String, ApiError> {
    let mut parts = raw.trim().split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if primary_ok && rest_ok {
        Ok(raw.trim().to_owned())
    } else {
        Err(ApiError::field(
            field,
            format!("`{raw}` is not a language tag like en or en-US"),
        ))
    }
}

/// A whole number in `min..=max`.
pub fn range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::field(
            field,
            format!("must be between {min} and {max}"),
        ))
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Opening hours: weekday keys `mon`…`sun`, each a list of `["HH:MM", "HH:MM"]` spans that
/// open before they close.
pub fn business_hours(field: &str, hours: BusinessHours) -> Result<BusinessHours, ApiError> {
    for (day, spans) in &hours {
        if !WEEKDAYS.contains(&day.as_str()) {
            return Err(ApiError::field(
                field,
                format!("`{day}` is not a weekday; use mon, tue, wed, thu, fri, sat, sun"),
            ));
        }
        for [open, close] in spans {
            let parse = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M");
            match (parse(open), parse(close)) {
                (Ok(o), Ok(c)) if o < c => {}
                (Ok(_), Ok(_)) => {
                    return Err(ApiError::field(
                        field,
                        format!("{day}: {open} must be before {close}"),
                    ));
                }
                _ => {
                    return Err(ApiError::field(
                        field,
                        format!("{day}: times are written HH:MM, like 09:00"),
                    ))
                }
            }
        }
    }
    Ok(hours)
}

/// Deserializes a field that may be absent (leave alone), `null` (clear) or a value (set).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_nonsense_is_refused() {
        assert_eq!(
            email("email", " Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn languages_timezones_and_hours_are_checked() {
        assert!(language("language", "en-US").is_ok());
        assert!(language("language", "English").is_err());
        assert_eq!(
            timezone("timezone", "America/Chicago").unwrap(),
            "America/Chicago"
        );
        assert!(timezone("timezone", "Mars/Olympus").is_err());
        let good: BusinessHours = serde_json::from_str(r#"{"mon":[["09:00","17:00"]]}"#).unwrap();
        assert!(business_hours("business_hours", good).is_ok());
        let backwards: BusinessHours =
            serde_json::from_str(r#"{"mon":[["17:00","09:00"]]}"#).unwrap();
        assert!(business_hours("business_hours", backwards).is_err());
        let holiday: BusinessHours = serde_json::from_str(r#"{"xmas":[]}"#).unwrap();
        assert!(business_hours("business_hours", holiday).is_err());
    }
}
