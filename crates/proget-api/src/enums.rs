//! Enumerations of the wire format: written in camelCase, read case-insensitively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that names none of an enumeration's variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    /// The value that was given.
    pub value: String,
    /// The accepted values, comma-separated.
    pub expected: &'static str,
}

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown value \"{}\", expected one of: {}",
            self.value, self.expected
        )
    }
}

impl std::error::Error for UnknownVariant {}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal / $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The value as shown to people (capitalised).
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($wire) { return Ok($name::$variant); })+
                Err(UnknownVariant { value: s.to_owned(), expected: concat!($($wire, " "),+) })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::string_enum(&[$($wire),+])
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

wire_enum! {
    /// The kind of an API key.
    ApiKeyType {
        /// Acts on system APIs (`systemApis`).
        System = "system" / "System",
        /// Acts on one feed or feed group (`packagePermissions`).
        Feed = "feed" / "Feed",
        /// Acts as a user.
        Personal = "personal" / "Personal",
        /// Legacy keys; cannot be created.
        Other = "other" / "Other",
    }
}

wire_enum! {
    /// What the server logs for requests made with a key.
    Logging {
        /// Nothing.
        None = "none" / "None",
        /// Requests.
        Request = "request" / "Request",
        /// Responses.
        Response = "response" / "Response",
        /// Requests and responses.
        Both = "both" / "Both",
    }
}

wire_enum! {
    /// A system API a system key may use.
    SystemApi {
        /// Everything, including managing API keys and users.
        FullControl = "full-control" / "full-control",
        /// Feed management.
        Feeds = "feeds" / "feeds",
        /// Software composition analysis.
        Sca = "sca" / "sca",
        /// SBOM upload.
        SbomUpload = "sbom-upload" / "sbom-upload",
    }
}

wire_enum! {
    /// What a feed key may do with packages.
    PackagePermission {
        /// Download and view.
        View = "view" / "view",
        /// Upload.
        Add = "add" / "add",
        /// Promote between feeds.
        Promote = "promote" / "promote",
        /// Delete.
        Delete = "delete" / "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_read_any_case_and_write_camel_case() {
        assert_eq!("PERSONAL".parse::<ApiKeyType>(), Ok(ApiKeyType::Personal));
        assert_eq!(
            serde_json::to_string(&SystemApi::SbomUpload).unwrap(),
            "\"sbom-upload\""
        );
        assert_eq!(Logging::Both.label(), "Both");
        assert!("sometimes".parse::<Logging>().is_err());
    }
}
