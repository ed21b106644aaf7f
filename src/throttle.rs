//! Rates in DRF's "N/period" format.
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub period: Duration,
}

impl Rate {
    /// DRF's parser: only the first letter of the period counts (`s`, `m`, `h`, `d`), so
    /// "5/min" and "5/minute" agree. Empty means "no limit".
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let (num, period) = s.split_once('/').ok_or_else(|| format!("{s:?} is not of the form N/period"))?;
        let requests: u32 = num.trim().parse().map_err(|_| format!("{num:?} is not a whole number of requests"))?;
        let secs = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86400,
            _ => return Err(format!("unknown period {period:?} (use s, sec, m, min, h, hour, d or day)")),
        };
        if requests == 0 {
            return Err(format!("{s:?} allows no request at all"));
        }
        Ok(Some(Rate { requests, period: Duration::from_secs(secs) }))
    }

    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.period.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_drf_rates() {
        assert_eq!(Rate::parse("5/min").unwrap(), Some(Rate { requests: 5, period: Duration::from_secs(60) }));
        assert_eq!(Rate::parse("100/day").unwrap().unwrap().period, Duration::from_secs(86400));
        assert_eq!(Rate::parse("").unwrap(), None);
        assert!(Rate::parse("5").is_err());
        assert!(Rate::parse("x/min").is_err());
        assert!(Rate::parse("5/week").is_err());
        assert!(Rate::parse("0/s").is_err());
    }
}
