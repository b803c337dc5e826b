//! Decimals: written as text (exact, bounded in digits), from a JSON number
//! only when certainly exact, and in Cassandra's form (unscaled value and
//! scale).

/// Most digits a decimal may have. Far beyond any amount or measurement,
/// and it bounds the work of turning one into Cassandra's form, which grows
/// with the square of the digits: a hostile record of a million digits
/// would hold a write for many minutes.
const MAX_DECIMAL_DIGITS: usize = 10_000;

pub(super) const DECIMAL_TOO_LONG: &str = "over 10000 digits";

pub(super) fn too_many_digits(s: &str) -> bool {
    s.len() > MAX_DECIMAL_DIGITS
        && s.bytes().filter(u8::is_ascii_digit).count() > MAX_DECIMAL_DIGITS
}

/// A decimal's text: `[+-]digits[.digits][(e|E)[+-]digits]`, without the `+`,
/// of at most [`MAX_DECIMAL_DIGITS`] digits.
pub(super) fn decimal_text(s: &str) -> Option<&str> {
    if too_many_digits(s) {
        return None;
    }
    let t = s.strip_prefix('+').unwrap_or(s);
    let body = t.strip_prefix('-').unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        digits(e) && e.len() <= 9
    });
    (mantissa_ok && exponent_ok).then_some(t)
}

/// A decimal's text as Cassandra's `decimal` holds it: the unscaled value as
/// a minimal two's-complement big-endian integer, and the scale (digits after
/// the point; negative for an exponent past them). `None` if `text` is not a
/// decimal as [`Cell::Decimal`] holds it, or its scale is beyond an `i32`.
pub fn decimal_parts(text: &str) -> Option<(Vec<u8>, i32)> {
    let t = decimal_text(text)?;
    let (negative, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = i32::try_from(frac.len() as i64 - exponent).ok()?;
    // The magnitude, little-endian base 256, by multiply-and-add per digit.
    let mut le: Vec<u8> = Vec::new();
    for d in int.bytes().chain(frac.bytes()) {
        let mut carry = u32::from(d - b'0');
        for byte in le.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            le.push(carry as u8);
        }
    }
    while le.last() == Some(&0) {
        le.pop();
    }
    // Room for the sign bit.
    le.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in le.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
    }
    let mut be: Vec<u8> = le.into_iter().rev().collect();
    // Minimal: drop a leading byte that only repeats the next byte's sign.
    while be.len() > 1
        && ((be[0] == 0 && be[1] & 0x80 == 0) || (be[0] == 0xff && be[1] & 0x80 != 0))
    {
        be.remove(0);
    }
    Some((be, scale))
}

/// A JSON number with a fraction as a decimal, when it is certainly what the
/// source wrote (see the module's rules).
pub(super) fn decimal_from_double(x: f64) -> Result<String, Option<&'static str>> {
    let text = serde_json::Number::from_f64(x).ok_or(None)?.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&c| c == b'0')
        .collect::<Vec<u8>>();
    let len = significant.len() - significant.iter().rev().take_while(|&&c| c == b'0').count();
    if len <= 15 {
        Ok(text)
    } else {
        Err(Some(
            "a JSON number this long may have been rounded; send the decimal as a string",
        ))
    }
}
