//! Business metrics: registrations, matches, messages, payments and
//! revenue, feature usage and conversion funnels.
//!
//! Each helper increments a counter of the catalogue (`docs/metrics.md`);
//! [`payment_processed`] also writes one log line (`log_type: "payment"`).
//! Arguments are labels: pass a small set of names (`"email"`, `"stripe"`),
//! never IDs or free text; distinct values past the label cap are folded
//! into `other` and counted in `glimpse_obs_label_overflow_total`.
//!
//! ```
//! use glimpse_obs::business::{self, PaymentStatus};
//! # glimpse_obs::testing::capture(|| {
//! business::user_registered("email");
//! business::match_created();
//! business::message_sent("text");
//! business::payment_processed("stripe", "EUR", 1299, PaymentStatus::Succeeded);
//! business::feature_used("super_like");
//! business::conversion("onboarding", "profile_completed");
//! # });
//! ```

use metrics::Counter;

use super::{
    amount_counter::{AmountCounter, AmountFamily},
    cardinality::OVERFLOW_VALUE,
    handles::{Family, Single},
    names::{self, labels as keys},
};

static REGISTRATIONS: Family<Counter> = Family::new(
    names::USER_REGISTRATIONS,
    |method, _| metrics::counter!(names::USER_REGISTRATIONS, keys::METHOD => method.to_owned()),
);

/// Count one user registration by sign-up `method` (`"email"`,
/// `"google"`, `"apple"`) in `glimpse_user_registrations_total{method}`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::business::user_registered("email");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_user_registrations_total", &[("method", "email")]), 1.0);
/// ```
#[inline]
pub fn user_registered(method: &str) {
    REGISTRATIONS.with(method, "", |c| c.increment(1));
}

static MATCHES: Single<Counter> = Single::new(|| metrics::counter!(names::MATCHES_CREATED));

/// Count one match in `glimpse_matches_created_total`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::business::match_created();
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_matches_created_total", &[]), 1.0);
/// ```
#[inline]
pub fn match_created() {
    MATCHES.get().increment(1);
}

static MESSAGES: Family<Counter> = Family::new(
    names::MESSAGES_SENT,
    |kind, _| metrics::counter!(names::MESSAGES_SENT, keys::KIND => kind.to_owned()),
);

/// Count one chat message by `kind` (`"text"`, `"photo"`, `"gif"`) in
/// `glimpse_messages_sent_total{kind}`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::business::message_sent("text");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_messages_sent_total", &[("kind", "text")]), 1.0);
/// ```
#[inline]
pub fn message_sent(kind: &str) {
    MESSAGES.with(kind, "", |c| c.increment(1));
}

/// The outcome of a payment: the `status` label and log field.
///
/// ```
/// use glimpse_obs::business::{PaymentStatus, payment_processed};
/// # glimpse_obs::testing::capture(|| {
/// let declined = true; // the provider's answer
/// let status = if declined { PaymentStatus::Failed } else { PaymentStatus::Succeeded };
/// payment_processed("stripe", "EUR", 1299, status);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The money was taken.
    Succeeded,
    /// The payment was declined or failed.
    Failed,
}

impl PaymentStatus {
    /// `"succeeded"` or `"failed"`.
    ///
    /// ```
    /// assert_eq!(glimpse_obs::business::PaymentStatus::Failed.as_str(), "failed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// The handles of one (provider, currency).
struct PaymentHandles {
    succeeded: Counter,
    failed: Counter,
    /// Revenue of `currency` (shared by every provider), kept in
    /// ten-thousandths of a major unit and rendered in major units: a
    /// counter of our own, because the `metrics` facade's counters cannot
    /// add 12.99.
    revenue: AmountCounter,
    /// Ten-thousandths of a major unit per minor unit of `currency`; `None`
    /// for `other`, whose payments come in any currency.
    scale: Option<u64>,
}

/// `glimpse_payment_amount_total{currency}`, rendered into the scrape text
/// by the exporter.
pub(crate) static REVENUE: AmountFamily = AmountFamily::new(
    names::PAYMENT_AMOUNT,
    keys::CURRENCY,
    "Revenue of succeeded payments in major currency units, by currency.",
);

/// The ISO 4217 currency codes in use (the list of the maintenance agency,
/// without `XXX` "no currency" and `XTS` "testing"), sorted.
const ISO_4217: &[[u8; 3]] = &[
    *b"AED", *b"AFN", *b"ALL", *b"AMD", *b"ANG", *b"AOA", *b"ARS", *b"AUD", *b"AWG", *b"AZN",
    *b"BAM", *b"BBD", *b"BDT", *b"BGN", *b"BHD", *b"BIF", *b"BMD", *b"BND", *b"BOB", *b"BOV",
    *b"BRL", *b"BSD", *b"BTN", *b"BWP", *b"BYN", *b"BZD", *b"CAD", *b"CDF", *b"CHE", *b"CHF",
    *b"CHW", *b"CLF", *b"CLP", *b"CNY", *b"COP", *b"COU", *b"CRC", *b"CUC", *b"CUP", *b"CVE",
    *b"CZK", *b"DJF", *b"DKK", *b"DOP", *b"DZD", *b"EGP", *b"ERN", *b"ETB", *b"EUR", *b"FJD",
    *b"FKP", *b"GBP", *b"GEL", *b"GHS", *b"GIP", *b"GMD", *b"GNF", *b"GTQ", *b"GYD", *b"HKD",
    *b"HNL", *b"HTG", *b"HUF", *b"IDR", *b"ILS", *b"INR", *b"IQD", *b"IRR", *b"ISK", *b"JMD",
    *b"JOD", *b"JPY", *b"KES", *b"KGS", *b"KHR", *b"KMF", *b"KPW", *b"KRW", *b"KWD", *b"KYD",
    *b"KZT", *b"LAK", *b"LBP", *b"LKR", *b"LRD", *b"LSL", *b"LYD", *b"MAD", *b"MDL", *b"MGA",
    *b"MKD", *b"MMK", *b"MNT", *b"MOP", *b"MRU", *b"MUR", *b"MVR", *b"MWK", *b"MXN", *b"MXV",
    *b"MYR", *b"MZN", *b"NAD", *b"NGN", *b"NIO", *b"NOK", *b"NPR", *b"NZD", *b"OMR", *b"PAB",
    *b"PEN", *b"PGK", *b"PHP", *b"PKR", *b"PLN", *b"PYG", *b"QAR", *b"RON", *b"RSD", *b"RUB",
    *b"RWF", *b"SAR", *b"SBD", *b"SCR", *b"SDG", *b"SEK", *b"SGD", *b"SHP", *b"SLE", *b"SLL",
    *b"SOS", *b"SRD", *b"SSP", *b"STN", *b"SVC", *b"SYP", *b"SZL", *b"THB", *b"TJS", *b"TMT",
    *b"TND", *b"TOP", *b"TRY", *b"TTD", *b"TWD", *b"TZS", *b"UAH", *b"UGX", *b"USD", *b"USN",
    *b"UYI", *b"UYU", *b"UYW", *b"UZS", *b"VED", *b"VES", *b"VND", *b"VUV", *b"WST", *b"XAF",
    *b"XAG", *b"XAU", *b"XBA", *b"XBB", *b"XBC", *b"XBD", *b"XCD", *b"XCG", *b"XDR", *b"XOF",
    *b"XPD", *b"XPF", *b"XPT", *b"XSU", *b"XUA", *b"YER", *b"ZAR", *b"ZMW", *b"ZWG", *b"ZWL",
];

/// Whether `code` is an ISO 4217 currency code in use (any case): `EUR`,
/// `jpy`; not `ZZZ`, `euro` or `XXX`. Payment metrics record any other
/// value as `currency="other"`, without taking a slot of the label cap.
///
/// ```
/// use glimpse_obs::business::is_iso4217;
/// assert!(is_iso4217("EUR"));
/// assert!(is_iso4217("gbp"));
/// assert!(!is_iso4217("ZZZ"));
/// assert!(!is_iso4217("euro"));
/// ```
pub fn is_iso4217(code: &str) -> bool {
    let &[a, b, c] = code.as_bytes() else {
        return false;
    };
    ISO_4217
        .binary_search(&[a, b, c].map(|x| x.to_ascii_uppercase()))
        .is_ok()
}

// Provider and currency are capped separately: a new provider past the cap
// becomes `provider="other"` without moving a known currency's revenue into
// `currency="other"`. A currency that is not an ISO 4217 code is `other`
// without taking a slot, so junk cannot push real currencies out (checked
// only when a value is first seen: the handles of admitted values are cached).
static PAYMENTS: Family<PaymentHandles> =
    Family::per_label_checked(names::PAYMENTS, is_iso4217, |provider, currency| {
        let count = |status: PaymentStatus| {
            metrics::counter!(names::PAYMENTS,
            keys::STATUS => status.as_str(),
            keys::PROVIDER => provider.to_owned(),
            keys::CURRENCY => currency.to_owned())
        };
        PaymentHandles {
            succeeded: count(PaymentStatus::Succeeded),
            failed: count(PaymentStatus::Failed),
            revenue: REVENUE.counter(currency),
            scale: (currency != OVERFLOW_VALUE).then(|| revenue_scale(currency)),
        }
    });

/// The number of decimals of `currency`'s minor unit (ISO 4217): 0 for
/// JPY or KRW, 3 for KWD or BHD, 4 for CLF, 2 for every other code.
///
/// ```
/// use glimpse_obs::business::currency_exponent;
/// assert_eq!(currency_exponent("EUR"), 2);
/// assert_eq!(currency_exponent("JPY"), 0);
/// assert_eq!(currency_exponent("KWD"), 3);
/// ```
pub fn currency_exponent(currency: &str) -> u32 {
    let &[a, b, c] = currency.as_bytes() else {
        return 2;
    };
    match &[a, b, c].map(|x| x.to_ascii_uppercase()) {
        // ISO 4217 codes whose minor unit is not 1/100.
        b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF"
        | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
        b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
        b"CLF" | b"UYW" => 4,
        _ => 2,
    }
}

/// `amount_minor` in major units of `currency`: 1299 EUR cents is 12.99,
/// 1299 JPY is 1299.0.
///
/// ```
/// use glimpse_obs::business::major_units;
/// assert_eq!(major_units(1299, "EUR"), 12.99);
/// assert_eq!(major_units(1299, "JPY"), 1299.0);
/// ```
pub fn major_units(amount_minor: u64, currency: &str) -> f64 {
    const SCALE: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
    amount_minor as f64 / SCALE[currency_exponent(currency) as usize]
}

/// `amount_minor` in the revenue counter's unit, ten-thousandths of a major
/// unit: the same for every currency, so `currency="other"` (currencies
/// past the label cap) sums amounts of different exponents correctly.
/// `None` when it does not fit in a `u64`.
fn revenue_units(amount_minor: u64, currency: &str) -> Option<u64> {
    amount_minor.checked_mul(revenue_scale(currency))
}

/// Ten-thousandths of a major unit per minor unit of `currency`.
fn revenue_scale(currency: &str) -> u64 {
    const SCALE: [u64; 5] = [10_000, 1_000, 100, 10, 1];
    SCALE[currency_exponent(currency) as usize]
}

static AMOUNT_REJECTED: Single<Counter> =
    Single::new(|| metrics::counter!(names::PAYMENT_AMOUNT_REJECTED));

/// Count one payment and log it.
///
/// - `glimpse_payments_total{status,provider,currency}` +1;
/// - on success, `glimpse_payment_amount_total{currency}` += the amount in
///   major units ([`major_units`]: 1299 EUR cents adds 12.99, 1299 JPY adds
///   1299); an amount that would carry the sum past its top (1.8e15 major
///   units, `u64::MAX` minor units for one) adds nothing and counts in
///   `glimpse_payment_amount_rejected_total`, so revenue never goes down;
/// - one line, INFO on success and WARN on failure, so the guide's query
///   `service:payment AND status:failed` finds each failure once:
///
/// | field | value |
/// |---|---|
/// | `message` | `payment processed` |
/// | `log_type` | `payment` (7-year retention) |
/// | `status` | `succeeded` / `failed` |
/// | `amount` | major units, a number |
/// | `amount_minor` | the integer amount as given |
/// | `currency` | ISO 4217 code, upper-cased |
/// | `provider` | as given |
///
/// plus `requestId`, `userId` and the trace IDs of the current request. The
/// line is the business event; the compliance record, with actor and payment
/// ID, is [`crate::audit::payment_transaction`]: call both.
///
/// ```
/// use glimpse_obs::business::{payment_processed, PaymentStatus};
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// payment_processed("stripe", "EUR", 1299, PaymentStatus::Failed);
/// # });
/// # let line = seen.find(|l| l["message"] == "payment processed").unwrap();
/// # assert_eq!(line["status"], "failed");
/// # assert_eq!(line["log_type"], "payment");
/// ```
pub fn payment_processed(provider: &str, currency: &str, amount_minor: u64, status: PaymentStatus) {
    let mut buf = [0u8; 3];
    let currency = upper_code(currency, &mut buf);
    let status_str = status.as_str();
    // The major-unit `amount` is computed only for a line that is written
    // (field values are evaluated after the level check).
    match status {
        PaymentStatus::Succeeded => {
            PAYMENTS.with(provider, currency, |h| {
                h.succeeded.increment(1);
                // The scale is resolved with the handles, except for `other`.
                let units = match h.scale {
                    Some(scale) => amount_minor.checked_mul(scale),
                    None => revenue_units(amount_minor, currency),
                };
                if !units.is_some_and(|units| h.revenue.increment(units)) {
                    AMOUNT_REJECTED.get().increment(1);
                }
            });
            tracing::info!(
                target: "glimpse_obs::business",
                log_type = "payment",
                status = status_str,
                amount = major_units(amount_minor, currency),
                amount_minor,
                currency,
                provider,
                "payment processed"
            );
        }
        PaymentStatus::Failed => {
            PAYMENTS.with(provider, currency, |h| h.failed.increment(1));
            tracing::warn!(
                target: "glimpse_obs::business",
                log_type = "payment",
                status = status_str,
                amount = major_units(amount_minor, currency),
                amount_minor,
                currency,
                provider,
                "payment processed"
            );
        }
    }
}

/// `code` upper-cased when it is three ASCII letters (an ISO 4217 code),
/// without allocating; anything else unchanged.
pub(crate) fn upper_code<'a>(code: &'a str, buf: &'a mut [u8; 3]) -> &'a str {
    let b = code.as_bytes();
    if b.len() == 3
        && b.iter().all(u8::is_ascii_alphabetic)
        && !b.iter().all(u8::is_ascii_uppercase)
    {
        for (o, c) in buf.iter_mut().zip(b) {
            *o = c.to_ascii_uppercase();
        }
        return std::str::from_utf8(buf).unwrap_or(code);
    }
    code
}

static FEATURES: Family<Counter> = Family::new(
    names::FEATURE_USAGE,
    |feature, _| metrics::counter!(names::FEATURE_USAGE, keys::FEATURE => feature.to_owned()),
);

/// Count one use of `feature` in `glimpse_feature_usage_total{feature}`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::business::feature_used("super_like");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_feature_usage_total", &[("feature", "super_like")]), 1.0);
/// ```
#[inline]
pub fn feature_used(feature: &str) {
    FEATURES.with(feature, "", |c| c.increment(1));
}

static CONVERSIONS: Family<Counter> = Family::new(names::CONVERSIONS, |funnel, step| {
    metrics::counter!(names::CONVERSIONS,
        keys::FUNNEL => funnel.to_owned(), keys::STEP => step.to_owned())
});

/// Count one user reaching `step` of `funnel` in
/// `glimpse_conversions_total{funnel,step}`; the conversion rate between two
/// steps is the ratio of their rates (`docs/metrics.md`). The label cap
/// applies to (funnel, step) pairs.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::business::conversion("premium", "checkout_started");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_conversions_total", &[("funnel", "premium"), ("step", "checkout_started")]), 1.0);
/// ```
#[inline]
pub fn conversion(funnel: &str, step: &str) {
    CONVERSIONS.with(funnel, step, |c| c.increment(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_upper_cased_without_allocating() {
        let mut buf = [0u8; 3];
        assert_eq!(upper_code("eur", &mut buf), "EUR");
        assert_eq!(upper_code("EUR", &mut buf), "EUR");
        assert_eq!(upper_code("euro", &mut buf), "euro");
        assert_eq!(upper_code("€", &mut buf), "€");
    }

    #[test]
    fn minor_units_follow_iso_4217_exponents() {
        assert_eq!(major_units(1299, "EUR"), 12.99);
        assert_eq!(major_units(1299, "usd"), 12.99);
        assert_eq!(major_units(1299, "JPY"), 1299.0);
        assert_eq!(major_units(1299, "KRW"), 1299.0);
        assert_eq!(major_units(1299, "KWD"), 1.299);
        assert_eq!(major_units(0, "EUR"), 0.0);
    }

    #[test]
    fn the_iso_4217_list_is_sorted_and_holds_the_exponent_table() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
        for code in ["JPY", "KWD", "CLF", "UYW", "EUR", "USD", "GBP"] {
            assert!(is_iso4217(code), "{code}");
        }
        for junk in ["", "EU", "EURO", "XXX", "XTS", "ZZZ", "E1R", "€UR"] {
            assert!(!is_iso4217(junk), "{junk}");
        }
    }

    #[test]
    fn revenue_units_are_ten_thousandths_of_a_major_unit_in_every_currency() {
        assert_eq!(revenue_units(1299, "EUR"), Some(129_900));
        assert_eq!(revenue_units(1299, "JPY"), Some(12_990_000));
        assert_eq!(revenue_units(1299, "KWD"), Some(12_990));
        assert_eq!(revenue_units(1299, "CLF"), Some(1299));
        assert_eq!(revenue_units(u64::MAX, "JPY"), None);
    }
}
