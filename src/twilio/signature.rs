//! `X-Twilio-Signature`: proving that a webhook (or a Media Streams WebSocket upgrade) really
//! came from Twilio, and signing requests the same way when the call simulator plays Twilio.
//!
//! The algorithm is PROTOCOLS.md §2, as twilio-python's `RequestValidator` and twilio-node's
//! `validateRequest` implement it:
//!
//! 1. start from the full URL Twilio requested, query string included;
//! 2. for a form POST, append `name + value` for every body parameter, names sorted, the
//!    values of a repeated name sorted too (identical repeated pairs count once: both SDKs put
//!    the values through a set);
//! 3. HMAC-SHA1 with the auth token, standard base64 with padding;
//! 4. compare in constant time, accepting the URL both without its port and with the scheme's
//!    default port added, because Twilio's own signing is inconsistent about the port.
//!
//! A JSON body is not signed through parameters: Twilio puts the body's hex SHA-256 in the
//! URL as `bodySHA256` and signs the URL alone (§2.2); see [`validate_body`].
//!
//! Everything here is pure: the handlers decide which public URL to pass (behind a TLS proxy
//! that is the configured public URL, never the internal `http://` one, §2.4).

use std::borrow::Cow;

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The header Twilio puts its signature in. Lower-case, as the `http` crate stores names, so
/// it can be passed straight to `HeaderMap::get`.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The query parameter that carries the SHA-256 of a JSON body (§2.2).
pub const BODY_HASH_PARAM: &str = "bodySHA256";

/// The parameter list of a request that has no signed body: a GET webhook or a WebSocket
/// upgrade, where only the URL is signed. Spares callers a type annotation on `&[]`.
pub const NO_PARAMS: &[(&str, &str)] = &[];

/// Why a request's signature was refused. Every variant means "answer 403 and do nothing";
/// they are distinguished only so logs can say which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carried no `X-Twilio-Signature` header at all.
    #[error("the request has no X-Twilio-Signature header")]
    Missing,
    /// The signature does not match the URL and parameters under our auth token: forged,
    /// tampered with, signed with another account's token, or sent to another URL.
    #[error("the X-Twilio-Signature does not match this URL and these parameters")]
    Mismatch,
    /// A JSON body was presented but the URL has no `bodySHA256`, so nothing binds the body
    /// to the signature.
    #[error("the URL carries no bodySHA256, so the request body cannot be verified")]
    MissingBodyHash,
    /// The signature is good but the body is not the one Twilio hashed into the URL.
    #[error("the request body does not match the bodySHA256 in the URL")]
    BodyHashMismatch,
}

/// A JSON request signed as Twilio signs one: the URL with `bodySHA256` appended, and the
/// signature to send in `X-Twilio-Signature`. Built by [`sign_body`] for the call simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedJsonRequest {
    /// The URL to request: the original one plus `bodySHA256=<hex>` in its query.
    pub url: String,
    /// The `X-Twilio-Signature` value for that URL.
    pub signature: String,
}

/// Computes the signature Twilio would send for a request to `url` with the form `params`,
/// exactly as given (no port normalisation). The call simulator signs with this; validation
/// uses it on each candidate URL.
pub fn sign<K, V>(auth_token: &SecretString, url: &str, params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Sorting pairs orders names first, then the values of a repeated name: the same order as
    // the SDKs' "sorted names, then sorted values per name". Rust compares `str` by UTF-8
    // bytes, which is code-point order, as Python's `sorted` is.
    pairs.sort_unstable();
    pairs.dedup();

    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a form-encoded (or GET, with [`NO_PARAMS`]) request: `url` is the full public URL
/// Twilio requested, query included; `params` are all decoded body parameters, in any order,
/// repeated names included; `signature` is the header value, `None` when it was absent.
///
/// Pass every parameter received, not a list of known ones: Twilio adds parameters without
/// notice and signs them all (§4.1).
pub fn validate<K, V>(
    auth_token: &SecretString,
    url: &str,
    params: &[(K, V)],
    signature: Option<&str>,
) -> Result<(), SignatureError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let signature = signature.ok_or(SignatureError::Missing)?.trim();
    let (without_port, with_port) = port_variants(url);
    // Both candidates are always computed and compared so the time taken does not say which
    // one matched.
    let a = ct_eq_str(&sign(auth_token, &without_port, params), signature);
    let b = ct_eq_str(&sign(auth_token, &with_port, params), signature);
    if bool::from(a | b) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Checks a request whose body is not a form (JSON): the signature must cover `url` (which
/// carries `bodySHA256`) with no parameters, and `body` must hash to that `bodySHA256`. Both
/// must hold (§2.2).
pub fn validate_body(
    auth_token: &SecretString,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let claimed = body_hash_in(url).ok_or(SignatureError::MissingBodyHash)?;
    validate(auth_token, url, NO_PARAMS, Some(signature))?;
    if bool::from(ct_eq_str(&body_sha256(body), &claimed)) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// The lower-case hex SHA-256 of a request body, as Twilio writes it into `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Signs a JSON request the way Twilio does: appends `bodySHA256` to `url`'s query and signs
/// the resulting URL with no parameters. For the call simulator.
pub fn sign_body(auth_token: &SecretString, url: &str, body: &[u8]) -> SignedJsonRequest {
    let hash = body_sha256(body);
    let url = match url.split_once('#') {
        Some((before, fragment)) => format!(
            "{before}{}{BODY_HASH_PARAM}={hash}#{fragment}",
            query_joiner(before)
        ),
        None => format!("{url}{}{BODY_HASH_PARAM}={hash}", query_joiner(url)),
    };
    let signature = sign(auth_token, &url, NO_PARAMS);
    SignedJsonRequest { url, signature }
}

/// `?` to start a query, `&` to extend one, nothing after a dangling `?` or `&`.
fn query_joiner(url: &str) -> &'static str {
    match url.find('?') {
        None => "?",
        Some(_) if url.ends_with('?') || url.ends_with('&') => "",
        Some(_) => "&",
    }
}

/// The first `bodySHA256` value of the URL's query, decoded, as Python's `parse_qs(...)[0]`.
fn body_hash_in(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == BODY_HASH_PARAM)
        .map(|(_, value)| value)
}

fn ct_eq_str(a: &str, b: &str) -> Choice {
    // `ct_eq` on slices of different lengths is false without comparing contents; the length
    // of a base64 SHA-1 is public anyway.
    a.as_bytes().ct_eq(b.as_bytes())
}

/// The two URLs the port rule accepts: the URL without any explicit port, and the URL with
/// its port (the scheme's default one added when it had none). One of the two is always the
/// URL as given.
///
/// The URL is edited as text, not re-serialised through a URL parser, because the signature
/// covers the exact bytes Twilio used (a parser would drop a default port, re-encode the
/// query or lower-case the host).
fn port_variants(url: &str) -> (Cow<'_, str>, Cow<'_, str>) {
    let Some(authority) = Authority::find(url) else {
        return (Cow::Borrowed(url), Cow::Borrowed(url));
    };
    match authority.port {
        Some(port) => {
            let without = format!("{}{}", &url[..port.start], &url[port.end..]);
            if port.end - port.start > 1 {
                (Cow::Owned(without), Cow::Borrowed(url))
            } else {
                // A bare `host:` has no port; treat it as the portless form and add the
                // default after the colon.
                let with = match default_port(authority.scheme) {
                    Some(p) => Cow::Owned(format!("{}{p}{}", &url[..port.end], &url[port.end..])),
                    None => Cow::Borrowed(url),
                };
                (Cow::Owned(without), with)
            }
        }
        None => {
            let with = match default_port(authority.scheme) {
                Some(p) => Cow::Owned(format!(
                    "{}:{p}{}",
                    &url[..authority.end],
                    &url[authority.end..]
                )),
                None => Cow::Borrowed(url),
            };
            (Cow::Borrowed(url), with)
        }
    }
}

/// The default port the "with port" candidate adds. twilio-python adds 80 for every scheme
/// but https; a `wss://` upgrade URL is TLS on 443, so the secure WebSocket scheme gets 443.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => Some(443),
        "http" | "ws" => Some(80),
        _ => None,
    }
}

/// Where the authority (`user@host:port`) of a URL is, found by hand (see [`port_variants`]).
struct Authority<'a> {
    scheme: &'a str,
    /// Byte offset just past the authority: where the path, query or fragment begins.
    end: usize,
    /// The `:port` span (colon included) when the URL names a port.
    port: Option<std::ops::Range<usize>>,
}

impl<'a> Authority<'a> {
    fn find(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")?;
        let start = scheme_end + 3;
        let end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        // Credentials may contain ':', so the host starts after the last '@'.
        let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        let host_port = &url[host_start..end];
        // An IPv6 literal is bracketed; its colons are not a port separator.
        let search_from = if host_port.starts_with('[') {
            host_port.find(']').map_or(host_port.len(), |i| i + 1)
        } else {
            0
        };
        let port = host_port[search_from..]
            .rfind(':')
            .map(|i| host_start + search_from + i)
            .filter(|&colon| url[colon + 1..end].bytes().all(|b| b.is_ascii_digit()))
            .map(|colon| colon..end);
        Some(Self {
            scheme: &url[..scheme_end],
            end,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    fn token() -> SecretString {
        SecretString::from("12345")
    }

    /// The parameters of PROTOCOLS.md §2.3, deliberately not in sorted order.
    fn params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("Caller", "+14158675309"),
        ]
    }

    #[test]
    fn the_reference_vector_signs_and_validates() {
        assert_eq!(sign(&token(), URL, &params()), EXPECTED);
        assert_eq!(validate(&token(), URL, &params(), Some(EXPECTED)), Ok(()));
    }

    #[test]
    fn the_explicit_443_vector_is_reproduced_and_accepted_for_the_portless_url() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let sig = "kvajT1Ptam85bY51eRf/AJRuM3w=";
        assert_eq!(sign(&token(), with_port, &params()), sig);
        assert_eq!(validate(&token(), URL, &params(), Some(sig)), Ok(()));
    }

    #[test]
    fn the_plain_http_vector_with_port_80_added_is_accepted() {
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = "0ZXoZLH/DfblKGATFgpif+LLRf4=";
        assert_eq!(
            sign(
                &token(),
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                &params()
            ),
            sig
        );
        assert_eq!(validate(&token(), http, &params(), Some(sig)), Ok(()));
    }

    #[test]
    fn the_http_vector_with_port_1234_is_accepted_as_requested() {
        let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        let sig = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=";
        assert_eq!(sign(&token(), url, &params()), sig);
        assert_eq!(validate(&token(), url, &params(), Some(sig)), Ok(()));
    }

    #[test]
    fn a_url_with_a_port_accepts_the_signature_of_the_portless_url() {
        // The port quirk the other way round: Twilio requested host:1234 but signed without
        // the port (twilio-python's `test_validation_removes_port_on_https`).
        let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(validate(&token(), url, &params(), Some(EXPECTED)), Ok(()));
    }

    #[test]
    fn duplicate_keys_sort_their_values_and_count_identical_pairs_once() {
        let expected = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
        let dup = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(sign(&token(), URL, &dup), expected);
        // twilio-python's own test repeats `Digits=1234` and expects the same signature.
        let mut repeated = dup.to_vec();
        repeated.push(("Digits", "1234"));
        assert_eq!(sign(&token(), URL, &repeated), expected);
        assert_eq!(validate(&token(), URL, &repeated, Some(expected)), Ok(()));
    }

    #[test]
    fn a_tampered_parameter_is_a_mismatch() {
        let mut tampered = params();
        tampered[0] = ("To", "+18005551213");
        assert_eq!(
            validate(&token(), URL, &tampered, Some(EXPECTED)),
            Err(SignatureError::Mismatch)
        );
        let mut extra = params();
        extra.push(("Injected", "1"));
        assert_eq!(
            validate(&token(), URL, &extra, Some(EXPECTED)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_url_or_another_token_is_a_mismatch() {
        let other = "https://mycompany.com/other.php?foo=1&bar=2";
        assert_eq!(
            validate(&token(), other, &params(), Some(EXPECTED)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(&SecretString::from("54321"), URL, &params(), Some(EXPECTED)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_or_empty_signature_is_refused() {
        assert_eq!(
            validate(&token(), URL, &params(), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate(&token(), URL, &params(), Some("")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_body_hash_vector_is_reproduced() {
        assert_eq!(body_sha256(BODY.as_bytes()), BODY_HASH);
    }

    #[test]
    fn a_json_body_with_a_matching_hash_validates() {
        let url = format!("{URL}&bodySHA256={BODY_HASH}");
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_eq!(sign(&token(), &url, NO_PARAMS), sig);
        assert_eq!(
            validate_body(&token(), &url, BODY.as_bytes(), Some(sig)),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_json_body_is_refused_even_with_a_good_signature() {
        let url = format!("{URL}&bodySHA256={BODY_HASH}");
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        let tampered = r#"{"property": "value", "boolean": false}"#;
        assert_eq!(
            validate_body(&token(), &url, tampered.as_bytes(), Some(sig)),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn a_json_body_needs_a_hash_in_the_url_and_a_signature() {
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_eq!(
            validate_body(&token(), URL, BODY.as_bytes(), Some(sig)),
            Err(SignatureError::MissingBodyHash)
        );
        let url = format!("{URL}&bodySHA256={BODY_HASH}");
        assert_eq!(
            validate_body(&token(), &url, BODY.as_bytes(), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate_body(&token(), &url, BODY.as_bytes(), Some(EXPECTED)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_body_produces_the_reference_url_and_signature() {
        let signed = sign_body(&token(), URL, BODY.as_bytes());
        assert_eq!(signed.url, format!("{URL}&bodySHA256={BODY_HASH}"));
        assert_eq!(signed.signature, "a9nBmqA0ju/hNViExpshrM61xv4=");
        let bare = sign_body(&token(), "https://h.example/hook", b"{}");
        assert!(bare.url.starts_with("https://h.example/hook?bodySHA256="));
        assert_eq!(
            validate_body(&token(), &bare.url, b"{}", Some(&bare.signature)),
            Ok(())
        );
    }

    #[test]
    fn a_websocket_upgrade_is_signed_over_the_wss_url_alone() {
        let url = "wss://sb.example.com/twilio/media";
        let sig = sign(&token(), "wss://sb.example.com:443/twilio/media", NO_PARAMS);
        assert_eq!(validate(&token(), url, NO_PARAMS, Some(&sig)), Ok(()));
    }

    #[test]
    fn port_variants_edit_only_the_port() {
        let cases = [
            (
                "https://h.com/p?q=1",
                "https://h.com/p?q=1",
                "https://h.com:443/p?q=1",
            ),
            (
                "https://h.com:8443/p",
                "https://h.com/p",
                "https://h.com:8443/p",
            ),
            ("http://h.com", "http://h.com", "http://h.com:80"),
            (
                "http://h.com?x=a:1",
                "http://h.com?x=a:1",
                "http://h.com:80?x=a:1",
            ),
            (
                "https://u:pw@h.com:99/p",
                "https://u:pw@h.com/p",
                "https://u:pw@h.com:99/p",
            ),
            ("https://[::1]/p", "https://[::1]/p", "https://[::1]:443/p"),
            ("https://[::1]:8/p", "https://[::1]/p", "https://[::1]:8/p"),
            ("https://h.com:/p", "https://h.com/p", "https://h.com:443/p"),
            ("not a url", "not a url", "not a url"),
            ("ftp://h.com/p", "ftp://h.com/p", "ftp://h.com/p"),
        ];
        for (url, without, with) in cases {
            let (a, b) = port_variants(url);
            assert_eq!((a.as_ref(), b.as_ref()), (without, with), "{url}");
        }
    }
}
