//! Staff roles. What each may do is decided in one place, here, so every route asks the
//! same question the same way.

use std::fmt;
use std::str::FromStr;

/// A staff member's role within one tenant, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the tenant; everything an admin can do, plus granting and removing owners.
    Owner,
    /// Manages users, numbers, agents and tenant settings.
    Admin,
    /// Staff who handle conversations: take over calls and texts, edit leads.
    Agent,
    /// Reads everything, changes nothing.
    Viewer,
}

/// A role name that is not one of owner, admin, agent, viewer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role; use owner, admin, agent or viewer")]
pub struct RoleParseError(pub String);

impl Role {
    /// Every role, for listings and documentation.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Agent, Role::Viewer];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    /// May manage users, phone numbers, agents and tenant settings.
    pub fn can_administer(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// May handle customers: take over conversations, edit leads, control live calls.
    pub fn can_handle_customers(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RoleParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_owners_and_admins_administer_and_viewers_handle_nobody() {
        let admins: Vec<_> = Role::ALL
            .into_iter()
            .filter(|r| r.can_administer())
            .collect();
        assert_eq!(admins, [Role::Owner, Role::Admin]);
        assert!(!Role::Viewer.can_handle_customers());
        assert!(Role::Agent.can_handle_customers());
    }
}
