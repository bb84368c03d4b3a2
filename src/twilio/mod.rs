//! The Twilio wire layer: everything switchboard must say to, or accept from, Twilio, byte
//! for byte as `PROTOCOLS.md` §1–§4 describe it, and nothing else.
//!
//! - [`signature`]: `X-Twilio-Signature` checking (and signing, for the call simulator).
//! - [`twiml`]: the TwiML documents we answer webhooks with.
//! - [`media`]: the Media Streams WebSocket messages and the 160-byte audio framing.
//! - [`rest`]: the REST calls we make (outbound calls, hang-up, transfer, SMS).
//! - [`lenient`]: serde helpers for fields Twilio sends as either strings or numbers.
//!
//! This module knows no routes, tenants or actors: the webhook handlers and the call
//! runtime sit above it and turn its raw wire types into the domain's parsed ones. Keeping it
//! free of our own state is what lets the call simulator reuse it to impersonate Twilio.

pub mod lenient;
pub mod media;
pub mod rest;
pub mod signature;
pub mod twiml;
