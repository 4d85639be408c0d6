//! The reception-addon rules engine: which addon a visit earns, under the rules in force on its date.
//!
//! Rules are data (`data/reception-addons.toml`, validated at load): effective dates, facility kind,
//! visit kind, conditions, 施設基準, the マイナ保険証利用率 requirement, frequency limits, codes and sources.
//! A new 診療報酬改定 is a data change. The engine is a pure function of the rule set and the whole visit
//! history of a clinic, so a visit that arrives late (an agent that was offline) simply changes the input,
//! and evaluating again gives the same answer as in-order arrival. Every decision says why, in Japanese a
//! billing clerk can read (and in English for English pages), citing the rule and its source.

pub mod billing;
mod engine;
pub mod figures;
mod input;
mod rules;
mod text;
pub mod usage;

pub use engine::{Decision, Granted, UsageVerdict, evaluate, usage_verdicts};
pub use input::{Clinic, ClinicSettings, EARLIEST, EvalInput, InputError, RateBasis, Standard, Visit, VisitKind};
pub use onshi_domain::YearMonth;
pub use rules::{Rule, RuleSet, RulesError, UsageTier};
pub use text::Text;
pub use usage::{Forecast, Level, MonthCount, Standing};

/// The rules shipped with this build.
pub const BUILTIN_RULES: &str = include_str!("../data/reception-addons.toml");
