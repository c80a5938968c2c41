//! Who may call a service's HTTP API: API keys and HS256 JWTs, each with a scope (`read` <
//! `write` < `admin`), checked on REST, SSE, WebSocket and MCP alike; and a token-bucket rate
//! limit per credential. Each service says which scope a request needs ([`ScopePolicy`]).
//!
//! Keys are compared by their SHA-256 digests in constant time and never logged. JWTs are
//! verified here with `hmac` + `sha2` (already in the build through sqlx) rather than pulling a
//! JWT crate with every signature algorithm: only HS256 is accepted (`alg` must say so; `none`
//! and everything else are refused), `exp` is required, `nbf` honoured, `aud` not checked.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::http::ApiError;

/// A credential or a credentials list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

type Result<T> = std::result::Result<T, AuthError>;

/// What a credential may do. Each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    /// As a token's `scope` claim and the API say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(AuthError::Invalid {
                field: "scope",
                message: format!("{other:?} is not one of read, write, admin"),
            }),
        }
    }
}

/// One API key: a name for logs and rate limits, its scope, and the SHA-256 of the secret.
#[derive(Clone)]
pub struct ApiKey {
    name: String,
    scope: Scope,
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

const MIN_SECRET_LEN: usize = 16;

/// Rate-limit buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl ApiKey {
    pub fn new(name: impl Into<String>, scope: Scope, secret: &str) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::Invalid {
                field: "api key",
                message: format!("keys must be at least {MIN_SECRET_LEN} characters"),
            });
        }
        Ok(Self {
            name: name.into(),
            scope,
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Keys in the text form of a keys file: one per line, `<scope> <key> [name]`; blank lines
    /// and `#` comments are skipped. An unnamed key is named `<source>:<line>` (so keys from
    /// different sources never share a name, a rate-limit bucket or an audit trail).
    pub fn parse_list(text: &str, source: &str) -> Result<Vec<Self>> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(scope), Some(secret)) = (words.next(), words.next()) else {
                return Err(AuthError::Invalid {
                    field: "api keys",
                    message: format!("line {}: expected <scope> <key> [name]", number + 1),
                });
            };
            let name = words
                .next()
                .map_or_else(|| format!("{source}:{}", number + 1), str::to_owned);
            keys.push(Self::new(name, scope.parse()?, secret)?);
        }
        Ok(keys)
    }
}

/// The credentials the HTTP API accepts, and its rate limit. No keys and no JWT secret means
/// authentication is off (allowed on loopback addresses only).
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    /// HS256 secret for JWTs (at least 32 bytes).
    pub jwt_secret: Option<Vec<u8>>,
    /// Requests per second each credential may make (burst of twice as many); `None` for no
    /// limit.
    pub rate_limit: Option<u32>,
    /// The `aud` a JWT must name when it names one: a token minted for one service (the
    /// hub's login says `aud: "mcp-hub"`) is refused by another sharing its secret. Tokens
    /// without `aud` are accepted by every service.
    pub audience: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &self.api_keys)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("rate_limit", &self.rate_limit)
            .field("audience", &self.audience)
            .finish()
    }
}

impl AuthConfig {
    pub fn is_enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt_secret.is_some()
    }
}

/// Who made a request. Put in the request's extensions by [`guard`] when authentication is on.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<name>` or `jwt:<sub>`: recorded as the actor of what it changes.
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    /// The actor to record for a change this principal makes, naming whom it says it acts for
    /// (`claimed`) without letting that hide who really made it.
    pub fn actor(&self, claimed: Option<&str>) -> String {
        match claimed.map(str::trim).filter(|c| !c.is_empty()) {
            Some(claimed) if claimed != self.name => format!("{claimed} (via {})", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The scope a request needs, decided by each service from its method and path.
pub type ScopePolicy = fn(&Method, &str) -> Scope;

/// The middleware's state: credentials, the service's scope policy and the buckets of the rate
/// limit.
#[derive(Debug)]
pub struct Gate {
    config: AuthConfig,
    policy: ScopePolicy,
    /// Credentials' rate-limit buckets.
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Failed attempts per client address: kept apart, so a flood of addresses can only evict
    /// its own kind, never a credential's limit.
    failures: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refreshed: Instant,
}

impl Gate {
    /// The state for [`guard`] (`middleware::from_fn_with_state(Gate::new(..), guard)`).
    pub fn new(config: AuthConfig, policy: ScopePolicy) -> Arc<Self> {
        Arc::new(Self {
            config,
            policy,
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn authenticate(&self, request: &Request) -> std::result::Result<Principal, ApiError> {
        if !self.config.is_enabled() {
            return Ok(Principal {
                name: "local".into(),
                scope: Scope::Admin,
            });
        }
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .or_else(|| {
                request
                    .headers()
                    .get("x-api-key")
                    .and_then(|value| value.to_str().ok())
            })
            .or_else(|| query_token(request))
            .map(str::trim)
            .ok_or_else(|| unauthorized("send Authorization: Bearer <API key or JWT>"))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every key is compared, so timing does not tell which one nearly matched.
        let mut found: Option<&ApiKey> = None;
        for key in &self.config.api_keys {
            if constant_time_eq(&key.digest, &digest) {
                found = Some(key);
            }
        }
        if let Some(key) = found {
            return Ok(Principal {
                name: format!("key:{}", key.name),
                scope: key.scope,
            });
        }
        match &self.config.jwt_secret {
            Some(secret) if token.matches('.').count() == 2 => {
                verify_jwt(token, secret, self.config.audience.as_deref())
            }
            _ => Err(unauthorized("the credential is not valid")),
        }
    }

    /// Takes one token from the principal's bucket; the wait until the next one otherwise.
    fn admit(&self, principal: &Principal) -> std::result::Result<(), Duration> {
        // Limits are per credential; without authentication there are none to limit.
        if !self.config.is_enabled() {
            return Ok(());
        }
        let Some(rate) = self.config.rate_limit.filter(|rate| *rate > 0) else {
            return Ok(());
        };
        let rate = f64::from(rate);
        take(&self.buckets, &principal.name, rate, rate * 2.0, 1.0)
    }

    /// Whether `client` may try to authenticate: after [`FAILURE_BURST`] failed attempts it may
    /// make one more every [`FAILURE_EVERY`], so keys cannot be guessed at the request rate.
    fn may_try(&self, client: IpAddr) -> std::result::Result<(), Duration> {
        take(
            &self.failures,
            &failure_key(client),
            failure_rate(),
            FAILURE_BURST,
            0.0,
        )
    }

    /// Whether `client` may try to authenticate now, for a service checking credentials of its
    /// own (a login form): the same per-address limit as failed tokens, so guessing passwords
    /// and guessing keys share one budget. `Some(429)` to answer when it may not; call
    /// [`Gate::failed`] when the attempt fails.
    pub fn limit_attempt(&self, client: Option<IpAddr>) -> Option<Response> {
        let client = client.filter(|_| self.config.is_enabled())?;
        self.may_try(client)
            .err()
            .map(|wait| too_many(wait, "too many failed authentication attempts"))
    }

    /// Like [`Gate::limit_attempt`], but the attempt is counted at once: for a check that is
    /// costly in itself (a password hash), so parallel attempts cannot all pass the limit
    /// before the first has failed. [`Gate::forgive`] gives it back when it succeeds.
    pub fn spend_attempt(&self, client: Option<IpAddr>) -> Option<Response> {
        let client = client.filter(|_| self.config.is_enabled())?;
        take(
            &self.failures,
            &failure_key(client),
            failure_rate(),
            FAILURE_BURST,
            1.0,
        )
        .err()
        .map(|wait| too_many(wait, "too many authentication attempts"))
    }

    /// Gives back an attempt [`Gate::spend_attempt`] counted, once it succeeded.
    pub fn forgive(&self, client: Option<IpAddr>) {
        let Some(client) = client.filter(|_| self.config.is_enabled()) else {
            return;
        };
        let mut buckets = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bucket) = buckets.get_mut(&failure_key(client)) {
            bucket.tokens = (bucket.tokens + 1.0).min(FAILURE_BURST);
        }
    }

    /// Counts a failed attempt from `client` (see [`Gate::limit_attempt`]).
    pub fn failed(&self, client: IpAddr) {
        let _ = take(
            &self.failures,
            &failure_key(client),
            failure_rate(),
            FAILURE_BURST,
            1.0,
        );
    }
}

/// Refills the bucket `key` of `buckets` (`rate` tokens a second up to `burst`), then takes `cost`
/// tokens if at least one whole token is left (`cost` 0 only looks); the wait until one
/// is otherwise.
fn take(
    buckets: &Mutex<HashMap<String, Bucket>>,
    key: &str,
    rate: f64,
    burst: f64,
    cost: f64,
) -> std::result::Result<(), Duration> {
    let now = Instant::now();
    let mut buckets = buckets
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Bounded memory: with many keys, forget the buckets idle long enough to be full.
    if buckets.len() > MAX_BUCKETS {
        buckets.retain(|_, bucket| {
            now.duration_since(bucket.refreshed) < Duration::from_secs(BUCKET_IDLE_SECS)
        });
        // Still full (many addresses kept busy at once): forget the longest idle half, so
        // memory stays bounded whatever the traffic.
        if buckets.len() > MAX_BUCKETS {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.refreshed).collect();
            let middle = ages.len() / 2;
            let (_, cutoff, _) = ages.select_nth_unstable(middle);
            let cutoff = *cutoff;
            buckets.retain(|_, bucket| bucket.refreshed > cutoff);
        }
    }
    let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
        tokens: burst,
        refreshed: now,
    });
    let elapsed = now.duration_since(bucket.refreshed).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.refreshed = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= cost;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

/// Failed authentications a client address may make at once, then one per [`FAILURE_EVERY`].
const FAILURE_BURST: f64 = 10.0;
const FAILURE_EVERY: Duration = Duration::from_secs(1);
/// A bucket idle this long is full again for every rate in use here, so it can be forgotten.
const BUCKET_IDLE_SECS: u64 = 60;

fn failure_rate() -> f64 {
    1.0 / FAILURE_EVERY.as_secs_f64()
}

fn failure_key(client: IpAddr) -> String {
    // Credentials' bucket names start with `key:` or `jwt:`, so these cannot collide. One IPv6
    // host usually holds a whole /64, so that is what one bucket limits.
    match client {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let [a, b, c, d, ..] = v6.segments();
            format!("failed:{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        IpAddr::V6(v6) => format!("failed:{}", v6.to_ipv4_mapped().map_or(client, IpAddr::V4)),
        IpAddr::V4(_) => format!("failed:{client}"),
    }
}

/// 429 with `Retry-After` in whole seconds.
fn too_many(wait: Duration, what: &str) -> Response {
    let seconds = wait.as_secs() + 1;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{what}; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn verify_jwt(
    token: &str,
    secret: &[u8],
    audience: Option<&str>,
) -> std::result::Result<Principal, ApiError> {
    let invalid = || unauthorized("the token is not valid");
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let header: serde_json::Value =
        serde_json::from_slice(&engine.decode(header).map_err(|_| invalid())?)
            .map_err(|_| invalid())?;
    if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
        return Err(unauthorized("only HS256 tokens are accepted"));
    }
    let signature = engine.decode(signature).map_err(|_| invalid())?;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).map_err(|_| invalid())?;
    mac.update(format!("{}.{payload}", token.split('.').next().unwrap_or_default()).as_bytes());
    mac.verify_slice(&signature).map_err(|_| invalid())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(payload).map_err(|_| invalid())?)
            .map_err(|_| invalid())?;
    let now = chrono::Utc::now().timestamp();
    match claims.get("exp").and_then(serde_json::Value::as_i64) {
        Some(exp) if exp > now => {}
        Some(_) => return Err(unauthorized("the token has expired")),
        None => return Err(unauthorized("the token has no exp claim")),
    }
    if claims
        .get("nbf")
        .and_then(serde_json::Value::as_i64)
        .is_some_and(|nbf| nbf > now)
    {
        return Err(unauthorized("the token is not valid yet"));
    }
    if let Some(aud) = claims.get("aud") {
        let names = |wanted: &str| match aud {
            serde_json::Value::String(one) => one == wanted,
            serde_json::Value::Array(many) => many.iter().any(|a| a.as_str() == Some(wanted)),
            _ => false,
        };
        if !audience.is_some_and(names) {
            return Err(unauthorized("the token is for another service (its aud)"));
        }
    }
    let scope = claims
        .get("scope")
        .and_then(|scope| scope.as_str())
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|scope| scope.parse::<Scope>().ok())
        .max()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the token grants no scope (read, write or admin)",
            )
        })?;
    let subject = claims
        .get("sub")
        .and_then(|sub| sub.as_str())
        .unwrap_or("anonymous");
    Ok(Principal {
        name: format!("jwt:{subject}"),
        scope,
    })
}

/// An HS256 JWT for `subject` with `scope`, valid for `ttl` from now (`iat`, `exp`, and any
/// `extra` claims): what [`Gate`] accepts when it holds the same `secret`.
pub fn issue_jwt(
    secret: &[u8],
    subject: &str,
    scope: Scope,
    ttl: Duration,
    extra: serde_json::Map<String, serde_json::Value>,
) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = chrono::Utc::now().timestamp();
    let mut claims = extra;
    claims.insert("sub".into(), subject.into());
    claims.insert("scope".into(), scope.as_str().into());
    claims.insert("iat".into(), now.into());
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    claims.insert("exp".into(), now.saturating_add(ttl).into());
    let header = engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = engine.encode(serde_json::Value::Object(claims).to_string());
    let signing_input = format!("{header}.{payload}");
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(signing_input.as_bytes());
    let signature = engine.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// The `access_token` query parameter of a `GET`: browsers cannot set headers on WebSocket or
/// `EventSource` connections. Only reads take it, so a token in a URL (which may be logged)
/// never authorizes a change on its own request line.
fn query_token(request: &Request) -> Option<&str> {
    if request.method() != Method::GET {
        return None;
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|token| !token.is_empty() && !token.contains('%'))
}

/// The axum middleware: 401 without a valid credential, 403 without the scope, 429 past the
/// rate limit (with `Retry-After`).
pub async fn guard(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    // The peer's address, when the server was started with it (`serve_http` does).
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .filter(|_| gate.config.is_enabled());
    if let Some(client) = client
        && let Err(wait) = gate.may_try(client)
    {
        return too_many(wait, "too many failed authentication attempts");
    }
    let principal = match gate.authenticate(&request) {
        Ok(principal) => principal,
        Err(error) => {
            if let Some(client) = client {
                gate.failed(client);
            }
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    let needed = (gate.policy)(request.method(), request.uri().path());
    if principal.scope < needed {
        let message = format!(
            "this needs the {needed:?} scope; the credential has {:?}",
            principal.scope
        )
        .to_lowercase();
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
    }
    if let Err(wait) = gate.admit(&principal) {
        return too_many(wait, "too many requests");
    }
    let mut request = request;
    if gate.config.is_enabled() {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_parse_and_refuse_weak_or_unknown_scopes() {
        let keys = ApiKey::parse_list(
            "# team keys\nread  aaaaaaaaaaaaaaaa editor\n\nwrite bbbbbbbbbbbbbbbbbb\n",
            "file",
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].name.as_str(), keys[0].scope),
            ("editor", Scope::Read)
        );
        assert_eq!(
            (keys[1].name.as_str(), keys[1].scope),
            ("file:4", Scope::Write)
        );
        assert!(ApiKey::parse_list("read short", "file").is_err());
        assert!(ApiKey::parse_list("owner aaaaaaaaaaaaaaaa", "file").is_err());
        assert!(ApiKey::parse_list("aaaaaaaaaaaaaaaa", "file").is_err());
        assert!(
            !format!("{:?}", keys[0]).contains("aaaa"),
            "keys are never printed"
        );
    }

    #[test]
    fn the_recorded_actor_names_the_credential() {
        let principal = Principal {
            name: "key:editor".into(),
            scope: Scope::Write,
        };
        assert_eq!(principal.actor(None), "key:editor");
        assert_eq!(principal.actor(Some(" ")), "key:editor");
        assert_eq!(principal.actor(Some("key:editor")), "key:editor");
        assert_eq!(
            principal.actor(Some("alice@example.com")),
            "alice@example.com (via key:editor)"
        );
    }

    #[test]
    fn failures_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(failure_key(v4), failure_key(mapped));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(failure_key(a), failure_key(b));
        assert_ne!(failure_key(a), failure_key(other));
    }

    #[test]
    fn the_buckets_stay_bounded_when_every_address_is_busy() {
        let gate = Gate::new(AuthConfig::default(), |_, _| Scope::Read);
        for n in 0..(MAX_BUCKETS as u32 + 500) {
            gate.failed(IpAddr::V4(std::net::Ipv4Addr::from(n)));
        }
        let buckets = gate.failures.lock().unwrap().len();
        assert!(buckets <= MAX_BUCKETS, "{buckets} buckets");
    }

    #[test]
    fn issued_tokens_verify_and_expire() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = issue_jwt(
            secret,
            "alice",
            Scope::Write,
            Duration::from_secs(60),
            serde_json::Map::new(),
        );
        let principal = verify_jwt(&token, secret, None).unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.scope),
            ("jwt:alice", Scope::Write)
        );
        assert!(verify_jwt(&token, b"another secret of 32 bytes......", None).is_err());
        let expired = issue_jwt(
            secret,
            "alice",
            Scope::Read,
            Duration::ZERO,
            serde_json::Map::new(),
        );
        let error = verify_jwt(&expired, secret, None).unwrap_err();
        assert!(format!("{error:?}").contains("expired"), "{error:?}");
        // A token for one service is refused by another that shares the secret.
        let mut extra = serde_json::Map::new();
        extra.insert("aud".into(), "mcp-hub".into());
        let hub = issue_jwt(
            secret,
            "alice",
            Scope::Admin,
            Duration::from_secs(60),
            extra,
        );
        assert!(verify_jwt(&hub, secret, Some("mcp-hub")).is_ok());
        assert!(verify_jwt(&hub, secret, None).is_err());
        assert!(verify_jwt(&hub, secret, Some("mcp-tasks")).is_err());
        assert!(
            verify_jwt(&token, secret, Some("mcp-hub")).is_ok(),
            "no aud: for anyone"
        );
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
    }
}
