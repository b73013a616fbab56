//! OpenAPI schemas (`utoipa`) of the types whose JSON form is written by hand.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

use crate::Expiration;

/// A string that is one of `values` (written exactly so, read in any case).
pub(crate) fn string_enum(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some("Written as listed; read in any letter case."))
        .into()
}

impl utoipa::PartialSchema for Expiration {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "Written as an RFC 3339 date-time in UTC (`2027-08-01T00:00:00Z`); read also \
                 as `YYYY-MM-DD`, `YYYY/MM/DD` or a date-time without an offset (UTC).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Expiration {}
