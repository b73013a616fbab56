//! CSRF tokens. A session's token is an HMAC of its session token under the
//! installation secret: nothing more to store, and no page of another
//! origin can know it. Before log-in, the login form's token is compared
//! with a random cookie set with the form (double submit).

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::domain::Digester;

/// The form field every state-changing form carries.
pub const FIELD: &str = "csrf";

/// The CSRF token of the session whose token is `session_token`.
pub fn session_token(digester: &Digester, session_token: &str) -> String {
    hex::encode(
        digester
            .key(&format!("console-csrf:{session_token}"))
            .as_bytes(),
    )
}

/// Whether `given` equals `expected`, in constant time.
pub fn matches(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
}

/// A fresh random token (session tokens and the login form's token).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
