//! Masking of personal data in what hearth logs about conversations: the gateway's detectors
//! (emails, phone numbers, Luhn-checked card numbers, IBANs, IP addresses), so order ids and
//! amounts stay readable.

/// `text` with personal data replaced by `[email]`, `[phone]`, `[card]`, `[iban]`, `[ip]`.
pub fn mask_pii(text: &str) -> String {
    hearth_gateway::privacy::mask(text, &Default::default())
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
