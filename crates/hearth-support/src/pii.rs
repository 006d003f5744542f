//! Masking of personal data in what hearth logs about conversations: email addresses, phone
//! numbers and payment card numbers (Luhn-checked, so order ids and amounts stay readable).

use std::sync::LazyLock;

use regex::Regex;

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap());
/// 13–19 digits, optionally grouped by spaces or dashes.
static CARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").unwrap());
/// International or national phone numbers: an optional +country code, then 7–14 digits
/// with spaces, dots, dashes or parentheses between groups.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}\b|\+\d{8,15}\b",
    )
    .unwrap()
});

fn luhn(digits: &str) -> bool {
    let digits: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `text` with emails, card numbers and phone numbers replaced by `[email]`, `[card]` and
/// `[phone]`.
pub fn mask_pii(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[email]");
    let text = CARD.replace_all(&text, |c: &regex::Captures| {
        if luhn(&c[0]) {
            "[card]".to_string()
        } else {
            c[0].to_string()
        }
    });
    let text = PHONE.replace_all(&text, |c: &regex::Captures| {
        let digits = c[0].chars().filter(char::is_ascii_digit).count();
        if (7..=15).contains(&digits) {
            "[phone]".to_string()
        } else {
            c[0].to_string()
        }
    });
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails_cards_and_phones_but_not_order_ids() {
        let text =
            "I'm jane.doe+shop@example.co.uk, card 4111 1111 1111 1111, call +44 20 7946 0958 \
                    or (555) 123-4567 about order #W5442520 for $1234.50";
        let masked = mask_pii(text);
        assert!(!masked.contains("jane.doe"), "{masked}");
        assert!(!masked.contains("4111"), "{masked}");
        assert!(!masked.contains("7946"), "{masked}");
        assert!(!masked.contains("123-4567"), "{masked}");
        assert!(masked.contains("#W5442520"), "{masked}");
        assert!(masked.contains("$1234.50"), "{masked}");
        assert_eq!(masked.matches("[email]").count(), 1);
        assert_eq!(masked.matches("[card]").count(), 1);
        assert_eq!(masked.matches("[phone]").count(), 2, "{masked}");
    }

    #[test]
    fn digits_failing_luhn_are_not_cards() {
        assert_eq!(
            mask_pii("tracking 4111111111111112"),
            "tracking 4111111111111112"
        );
    }
}
