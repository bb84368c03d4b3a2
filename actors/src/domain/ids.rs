//! Typed ids. Every row id is a UUID v7 (time-ordered, so ids sort by creation and make
//! cheap pagination cursors); a newtype per kind keeps a `TenantId` from being passed where
//! an `AgentId` is meant.

use std::fmt;
use std::str::FromStr;

/// A string that is not a UUID was given where an id was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid id")]
pub struct IdParseError(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self).map_err(|_| IdParseError(s.to_owned()))
            }
        }
    };
}

id_type!(
    /// A tenant: one business (a dealership, a clinic) with its own numbers, agents and data.
    TenantId
);
id_type!(
    /// A staff member of one tenant.
    UserId
);
id_type!(
    /// A tenant's configured voice agent (prompt, voice, model, tools).
    AgentId
);
id_type!(
    /// A phone number a tenant has pointed at switchboard.
    PhoneNumberId
);
id_type!(
    /// One phone call, inbound or outbound, from ringing to its record after hang-up.
    CallId
);
id_type!(
    /// One customer's conversation with one tenant, across texts and calls.
    ConversationId
);
id_type!(
    /// A lead in a tenant's CRM: one customer, known by name, number and what they want.
    LeadId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantId>(), Ok(id));
    }

    #[test]
    fn a_non_uuid_is_refused_with_the_text_it_was_given() {
        let err = "abc".parse::<AgentId>().unwrap_err();
        assert_eq!(err.to_string(), "`abc` is not a valid id");
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = UserId::new();
        let b = UserId::new();
        assert!(a.to_string() < b.to_string());
    }
}
