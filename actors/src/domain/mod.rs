//! Parsed domain types shared by every layer: ids, phone numbers and staff roles.
//!
//! "Parse, don't validate": each type can only be built through a constructor that checks
//! it, so code that holds one never has to check again.

mod ids;
mod phone;
mod role;

pub use ids::{
    AgentId, CallId, ConversationId, IdParseError, LeadId, PhoneNumberId, TenantId, UserId,
};
pub use phone::{E164Error, E164};
pub use role::{Role, RoleParseError};
