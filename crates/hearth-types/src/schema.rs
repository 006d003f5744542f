//! Pieces of the API description (OpenAPI, through utoipa) for what a derive cannot say:
//! untagged unions whose branches need constraints to stay apart, fixed strings, enums of
//! plain strings. Every request and response type derives `ToSchema`; these fill its gaps.

use utoipa::openapi::schema::{
    ArrayBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::RefOr;

/// A string that must be one of `values`.
pub fn one_of_strings(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// A string that must be `value` (OpenAI's `"type": "function"` and the like).
pub fn fixed(value: &str) -> ObjectBuilder {
    one_of_strings(&[value])
}

/// A string of at least one character.
pub fn non_empty_string() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
}

/// A string of at most `max` characters.
pub fn text(max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max))
}

/// A list of `items`, `min` to `max` long.
pub fn list(items: impl Into<RefOr<Schema>>, min: Option<usize>, max: Option<usize>) -> Schema {
    ArrayBuilder::new()
        .items(ArrayItems::RefOrSchema(Box::new(items.into())))
        .min_items(min)
        .max_items(max)
        .into()
}

/// A token id.
fn token() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u32::MAX))
}

/// OpenAI's prompt and input unions: a string, a list of strings, a list of token ids, or a
/// list of token-id lists. Lists are never empty, which keeps the branches apart.
pub fn text_or_tokens(description: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(description))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(list(
            ObjectBuilder::new().schema_type(Type::String),
            Some(1),
            None,
        ))
        .item(list(token(), Some(1), None))
        .item(list(list(token(), Some(1), None), Some(1), None))
        .into()
}

/// A reference to the schema of `T` (which [`schema_by_hand!`] then lists among its own).
pub fn reference<T: utoipa::ToSchema>() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name(T::name())
}

/// `ToSchema` for a type whose schema is written out by `schema`, with the default name;
/// `uses` are the types its schema refers to (by [`reference`]), so that the document holds
/// them too.
#[macro_export]
macro_rules! schema_by_hand {
    ($ty:ty, $schema:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema.into()
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
    ($ty:ty, $schema:expr, [$($uses:ty),+]) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema.into()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn schemas(
                schemas: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                $(
                    schemas.push((
                        <$uses as utoipa::ToSchema>::name().into(),
                        <$uses as utoipa::PartialSchema>::schema(),
                    ));
                    <$uses as utoipa::ToSchema>::schemas(schemas);
                )+
            }
        }
    };
}

/// What an id may hold: no control characters.
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// What a name of an event type may hold: no control characters, and not only spaces.
pub const NAME: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// An id as a company knows it (an item's, a user's, an event's): at least one character,
/// none a control character.
pub fn id() -> ObjectBuilder {
    non_empty_string().pattern(Some(NO_CONTROL_CHARACTERS))
}

/// Any JSON value.
pub fn any() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
}
