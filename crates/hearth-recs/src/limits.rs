//! The most each stored field may hold. Every way in (HTTP, file import) checks a record
//! against these before it is stored, so no client can fill the database through one field.

use crate::data::{Event, Item, User};

// Text is bounded in characters (what a person counts, and what the API description's
// `maxLength` says); at most 4 bytes each.

/// Ids of items, users and events, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// An event type (`view`, `purchase` …), in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 64;
/// An item's title, in characters.
pub const MAX_TITLE_CHARS: usize = 2 * 1024;
/// An item's description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 64 * 1024;
/// Categories or tags of one item, and the characters of each.
pub const MAX_LABELS: usize = 256;
pub const MAX_LABEL_CHARS: usize = 256;
/// Attributes of an item or user, as JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;

/// A field over its limit: which one (relative to the record) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn too_long(field: &str, len: usize, max: usize) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: format!("'{field}' is {len} bytes; at most {max}"),
    }
}

fn too_many_chars(field: &str, len: usize, max: usize) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: format!("'{field}' is {len} characters; at most {max}"),
    }
}

/// A non-empty id of at most [`MAX_ID_CHARS`] without control characters.
/// An empty `field` names the id itself (an element of a list of ids).
pub fn check_id(field: &str, id: &str) -> Result<(), FieldError> {
    let name = if field.is_empty() { "an id" } else { field };
    let error = |message: String| FieldError {
        field: field.to_owned(),
        message,
    };
    if id.is_empty() {
        return Err(error(format!("'{name}' must not be empty")));
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(error(format!(
            "'{name}' is {chars} characters; at most {MAX_ID_CHARS}"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(error(format!(
            "'{name}' must not contain control characters"
        )));
    }
    Ok(())
}

fn check_len(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    // Bytes first: a text of at most `max` bytes has at most `max` characters.
    if text.len() > max {
        let chars = text.chars().count();
        if chars > max {
            return Err(too_many_chars(field, chars, max));
        }
    }
    Ok(())
}

fn check_labels(field: &str, labels: &[String]) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError {
            field: field.to_owned(),
            message: format!(
                "'{field}' has {} entries; at most {MAX_LABELS}",
                labels.len()
            ),
        });
    }
    for (k, label) in labels.iter().enumerate() {
        check_len(&format!("{field}[{k}]"), label, MAX_LABEL_CHARS)?;
    }
    Ok(())
}

fn check_attributes(
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), FieldError> {
    let len = serde_json::to_string(attributes).map_or(0, |a| a.len());
    if len > MAX_ATTRIBUTES_BYTES {
        return Err(too_long("attributes", len, MAX_ATTRIBUTES_BYTES));
    }
    Ok(())
}

pub fn check_item(item: &Item) -> Result<(), FieldError> {
    check_id("id", &item.id.0)?;
    check_len("title", &item.title, MAX_TITLE_CHARS)?;
    check_len("description", &item.description, MAX_DESCRIPTION_CHARS)?;
    check_labels("categories", &item.categories)?;
    check_labels("tags", &item.tags)?;
    check_attributes(&item.attributes)?;
    if let Some(price) = item.price {
        if !(price.is_finite() && price >= 0.0) {
            return Err(FieldError {
                field: "price".into(),
                message: "'price' must be a number ≥ 0".into(),
            });
        }
    }
    Ok(())
}

pub fn check_user(user: &User) -> Result<(), FieldError> {
    check_id("id", &user.id.0)?;
    check_attributes(&user.attributes)
}

pub fn check_event(event: &Event) -> Result<(), FieldError> {
    check_id("id", &event.id)?;
    check_id("user", &event.user.0)?;
    check_id("item", &event.item.0)?;
    check_event_type(&event.kind)?;
    if event.value.is_some_and(|v| !v.is_finite()) {
        return Err(FieldError {
            field: "value".into(),
            message: "'value' must be a finite number".into(),
        });
    }
    Ok(())
}

pub fn check_event_type(kind: &str) -> Result<(), FieldError> {
    if kind.trim().is_empty() {
        return Err(FieldError {
            field: "type".into(),
            message: "'type' must not be empty".into(),
        });
    }
    if kind.chars().any(char::is_control) {
        return Err(FieldError {
            field: "type".into(),
            message: "'type' must not contain control characters".into(),
        });
    }
    check_len("type", kind, MAX_EVENT_TYPE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ItemId, UserId};

    fn item() -> Item {
        serde_json::from_value(serde_json::json!({"id": "i1", "title": "A film"})).unwrap()
    }

    #[test]
    fn every_field_has_a_bound() {
        assert!(check_item(&item()).is_ok());
        let mut long = item();
        long.id = ItemId("x".repeat(MAX_ID_CHARS + 1));
        assert_eq!(check_item(&long).unwrap_err().field, "id");
        let mut long = item();
        long.description = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
        assert_eq!(check_item(&long).unwrap_err().field, "description");
        let mut many = item();
        many.tags = vec!["t".into(); MAX_LABELS + 1];
        assert_eq!(check_item(&many).unwrap_err().field, "tags");
        let mut wide = item();
        wide.categories = vec!["c".repeat(MAX_LABEL_CHARS + 1)];
        assert_eq!(check_item(&wide).unwrap_err().field, "categories[0]");
        let mut fat = item();
        fat.attributes
            .insert("blob".into(), "x".repeat(MAX_ATTRIBUTES_BYTES).into());
        assert_eq!(check_item(&fat).unwrap_err().field, "attributes");
        let mut negative = item();
        negative.price = Some(-1.0);
        assert_eq!(check_item(&negative).unwrap_err().field, "price");
        let mut control = item();
        control.id = ItemId("a\nb".into());
        assert_eq!(check_item(&control).unwrap_err().field, "id");
        let event = Event {
            id: "e".into(),
            user: UserId("u".into()),
            item: ItemId("i".into()),
            kind: "v".repeat(MAX_EVENT_TYPE_CHARS + 1),
            value: None,
            timestamp: 0,
        };
        assert_eq!(check_event(&event).unwrap_err().field, "type");
        let control = Event {
            kind: "view\u{0}".into(),
            ..event
        };
        assert_eq!(check_event(&control).unwrap_err().field, "type");
    }
}
