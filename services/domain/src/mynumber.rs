//! The 12-digit 個人番号 (マイナンバー) must never be stored or sent (番号法 第20条). オン資 never uses it, so a
//! 12-digit number whose last digit is the 個人番号 check digit is treated as one, wherever it appears, and
//! is stripped or refused before it reaches a buffer, a queue or a log.

/// The check digit of the first eleven digits, per 総務省令 第5条: 11 − (Σ Pn·Qn mod 11), 0 when the
/// remainder is ≤ 1; Pn is the n-th digit from the right, Qn = n+1 for n ≤ 6 and n−5 for n ≥ 7.
fn check_digit(first_eleven: &[u8]) -> u8 {
    let sum: u32 = first_eleven
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            u32::from(d) * q
        })
        .sum();
    let rem = sum % 11;
    if rem <= 1 { 0 } else { (11 - rem) as u8 }
}

/// True when `digits` is exactly twelve ASCII digits with a valid 個人番号 check digit.
pub fn is_individual_number(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    if bytes.len() != 12 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let values: Vec<u8> = bytes.iter().map(|b| b - b'0').collect();
    check_digit(&values[..11]) == values[11]
}

/// True when `text` contains a run of exactly twelve digits (ASCII or full-width, optionally split by
/// spaces or hyphens into 4-4-4) that passes the check digit.
pub fn contains_individual_number(text: &str) -> bool {
    find_individual_numbers(text).next().is_some()
}

/// Replaces each embedded 個人番号 with `*` characters of the same length in characters.
pub fn redact_individual_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    for (start, end) in find_individual_numbers(text) {
        for c in out.iter_mut().take(end).skip(start) {
            if digit_value(*c).is_some() {
                *c = '*';
            }
        }
    }
    out.into_iter().collect()
}

fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

/// Yields (start, end) character ranges of digit runs that form a 12-digit 個人番号. A run is a maximal
/// sequence of digits in which single separators (space, hyphen, their full-width forms) may appear.
fn find_individual_numbers(text: &str) -> impl Iterator<Item = (usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if digit_value(chars[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::new();
        let mut end = i;
        let mut j = i;
        while j < chars.len() {
            if let Some(d) = digit_value(chars[j]) {
                digits.push(d);
                end = j + 1;
                j += 1;
            } else if is_separator(chars[j]) && j + 1 < chars.len() && digit_value(chars[j + 1]).is_some() {
                j += 1;
            } else {
                break;
            }
        }
        if digits.len() == 12 && check_digit(&digits[..11]) == digits[11] {
            found.push((start, end));
        }
        i = end.max(i + 1);
    }
    found.into_iter()
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '\u{3000}' | 'ー' | '－' | '‐')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a valid 個人番号 from eleven digits.
    pub(crate) fn valid_number(first_eleven: &str) -> String {
        let digits: Vec<u8> = first_eleven.bytes().map(|b| b - b'0').collect();
        format!("{first_eleven}{}", check_digit(&digits))
    }

    #[test]
    fn a_number_with_the_right_check_digit_is_recognised() {
        let n = valid_number("12345678901");
        assert!(is_individual_number(&n));
        let mut wrong = n.clone().into_bytes();
        wrong[11] = b'0' + (wrong[11] - b'0' + 1) % 10;
        assert!(!is_individual_number(std::str::from_utf8(&wrong).unwrap()));
    }

    #[test]
    fn embedded_numbers_are_found_in_any_width_or_grouping() {
        let n = valid_number("98765432109");
        let grouped = format!("{}-{}-{}", &n[..4], &n[4..8], &n[8..]);
        let wide: String = n.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap()).collect();
        for text in [format!("memo {n} end"), format!("番号:{grouped}"), format!("x{wide}y")] {
            assert!(contains_individual_number(&text), "{text}");
            let redacted = redact_individual_numbers(&text);
            assert!(!contains_individual_number(&redacted), "{redacted}");
            assert!(redacted.contains("****"), "{redacted}");
        }
    }

    #[test]
    fn longer_and_shorter_digit_runs_are_left_alone() {
        let n = valid_number("11111111111");
        assert!(!contains_individual_number(&format!("{n}0")));
        assert!(!contains_individual_number(&n[..11]));
        assert!(!contains_individual_number("1311234567"));
    }
}
