//! Cost ceilings: per task, per workflow run and per day.
//!
//! A ceiling is checked before an agent starts: the run is refused when what was spent,
//! plus what the runs already in flight and this one are expected to cost, would cross
//! it. The expected cost of a run is the largest single run seen so far in this
//! workflow (nothing is known before the first one), so three tasks at $0.40 under a
//! $1.00 ceiling run two and refuse the third.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::agent::outcome::Outcome;
use crate::state::UnifiedState;

/// The ceilings and what has been spent against them.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    per_task: Option<f64>,
    per_run: Option<f64>,
    daily: Option<f64>,
    inner: Mutex<Spent>,
}

#[derive(Debug, Default)]
struct Spent {
    run: f64,
    today_before: f64,
    largest_run: f64,
    in_flight: usize,
    per_task: HashMap<String, f64>,
}

impl Budget {
    /// Ceilings in USD (None: no ceiling); `spent_today` is what earlier runs spent today.
    pub(crate) fn new(
        per_task: Option<f64>,
        per_run: Option<f64>,
        daily: Option<f64>,
        spent_today: f64,
    ) -> Budget {
        Budget {
            per_task,
            per_run,
            daily,
            inner: Mutex::new(Spent {
                today_before: spent_today,
                ..Spent::default()
            }),
        }
    }

    /// Seed what a task already spent in earlier workflow runs (per-task ceiling).
    pub(crate) fn seed_task(&self, task: &str, spent: f64) {
        if let Ok(mut s) = self.inner.lock() {
            s.per_task.insert(task.to_owned(), spent);
        }
    }

    /// May a run for `task` start? On success the run is counted as in flight until
    /// [`Budget::finish`] is called for it.
    pub(crate) fn start(&self, task: &str) -> Result<(), Outcome> {
        let Ok(mut s) = self.inner.lock() else {
            return Ok(());
        };
        let estimate = s.largest_run;
        let pending = estimate * (s.in_flight as f64 + 1.0);
        let task_spent = s.per_task.get(task).copied().unwrap_or(0.0);
        let checks = [
            ("per_task", self.per_task, estimate, task_spent),
            ("per_run", self.per_run, pending, s.run),
            ("daily", self.daily, pending, s.today_before + s.run),
        ];
        for (limit, ceiling, expected_usd, spent_usd) in checks {
            if let Some(ceiling) = ceiling
                && (spent_usd + expected_usd > ceiling + 1e-9 || ceiling <= 0.0)
            {
                return Err(Outcome::BudgetExceeded {
                    limit: limit.to_owned(),
                    limit_usd: ceiling,
                    spent_usd,
                    expected_usd,
                });
            }
        }
        s.in_flight += 1;
        Ok(())
    }

    /// A run that [`Budget::start`] admitted has finished having cost `cost` USD. When
    /// that run took its task, the workflow run or the day over a ceiling (the check
    /// before a run cannot stop one expensive run), says so: "cost $180.07 crossed the
    /// per-task ceiling $1.00" (rev11b F1). The next run is then refused by
    /// [`Budget::start`], and the workflow pauses.
    pub(crate) fn finish(&self, task: &str, cost: f64) -> Option<String> {
        let Ok(mut s) = self.inner.lock() else {
            return None;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        let cost = if cost.is_finite() && cost > 0.0 {
            cost
        } else {
            0.0
        };
        s.run += cost;
        s.largest_run = s.largest_run.max(cost);
        let before_task = s.per_task.get(task).copied().unwrap_or(0.0);
        *s.per_task.entry(task.to_owned()).or_insert(0.0) += cost;
        let before_run = s.run - cost;
        let crossed = |ceiling: Option<f64>, before: f64, after: f64| {
            ceiling.filter(|&c| cost > 0.0 && before <= c + 1e-9 && after > c + 1e-9)
        };
        let totals = [
            ("per-task", self.per_task, before_task, before_task + cost),
            ("per-run", self.per_run, before_run, s.run),
            (
                "daily",
                self.daily,
                s.today_before + before_run,
                s.today_before + s.run,
            ),
        ];
        let said: Vec<String> = totals
            .into_iter()
            .filter_map(|(name, ceiling, before, after)| {
                let c = crossed(ceiling, before, after)?;
                Some(if (after - cost).abs() < 1e-9 {
                    format!("cost ${cost:.2} crossed the {name} ceiling ${c:.2}")
                } else {
                    format!(
                        "cost ${cost:.2} (${after:.2} in all) crossed the {name} ceiling ${c:.2}"
                    )
                })
            })
            .collect();
        (!said.is_empty()).then(|| said.join("; "))
    }

    /// USD spent by this workflow run so far.
    pub(crate) fn spent(&self) -> f64 {
        self.inner.lock().map(|s| s.run).unwrap_or(0.0)
    }
}

/// What earlier runs spent today (the state's `cost_ledger`), for the daily ceiling.
pub(crate) fn spent_today(state: &UnifiedState) -> f64 {
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    state
        .cost_ledger
        .as_ref()
        .map_or(0.0, |ledger| ledger.spent_on(&today))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &Budget, task: &str, cost: f64) -> Result<(), Outcome> {
        b.start(task)?;
        let _ = b.finish(task, cost);
        Ok(())
    }

    fn limit_of(r: Result<(), Outcome>) -> String {
        match r {
            Err(Outcome::BudgetExceeded { limit, .. }) => limit,
            other => panic!("expected budget_exceeded, got {other:?}"),
        }
    }

    #[test]
    fn third_forty_cent_task_is_refused_under_one_dollar() {
        let b = Budget::new(None, Some(1.0), None, 0.0);
        run(&b, "1", 0.40).unwrap();
        run(&b, "2", 0.40).unwrap();
        match run(&b, "3", 0.40) {
            Err(Outcome::BudgetExceeded {
                limit, spent_usd, ..
            }) => {
                assert_eq!(limit, "per_run");
                assert!((spent_usd - 0.80).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exactly_reaching_a_ceiling_is_allowed() {
        let b = Budget::new(None, Some(1.2), None, 0.0);
        for t in ["1", "2", "3"] {
            run(&b, t, 0.40).unwrap();
        }
        assert_eq!(limit_of(run(&b, "4", 0.40)), "per_run");
    }

    #[test]
    fn in_flight_runs_count_against_the_ceiling() {
        let b = Budget::new(None, Some(1.0), None, 0.0);
        run(&b, "1", 0.40).unwrap();
        b.start("2").unwrap();
        // 0.40 spent + 0.40 in flight + 0.40 for this one > 1.00
        assert_eq!(limit_of(b.start("3")), "per_run");
    }

    #[test]
    fn per_task_and_daily_ceilings() {
        let b = Budget::new(Some(0.5), None, None, 0.0);
        b.seed_task("1", 0.3);
        run(&b, "2", 0.3).unwrap();
        assert_eq!(limit_of(b.start("1")), "per_task");
        let d = Budget::new(None, None, Some(2.0), 1.9);
        run(&d, "1", 0.2).unwrap();
        assert_eq!(limit_of(d.start("2")), "daily");
    }

    #[test]
    fn zero_ceiling_refuses_everything_and_no_ceiling_refuses_nothing() {
        assert_eq!(
            limit_of(Budget::new(None, Some(0.0), None, 0.0).start("1")),
            "per_run"
        );
        let free = Budget::new(None, None, None, 0.0);
        for i in 0..100 {
            run(&free, &i.to_string(), 5.0).unwrap();
        }
        assert!((free.spent() - 500.0).abs() < 1e-6);
    }
}
