//! Converging pushes: compare what a set asks for, what adsync wrote, and
//! what the platform holds, and write only the difference.
//!
//! The flow (issue #15), of which this module is the pure middle:
//!
//! 1. **observe**: list what the platform holds under the account and under
//!    every campaign the store manages (one listing per parent, within the
//!    read budget) and turn each listed entity into [`Observed`](crate::converge::Observed) fields
//!    ([`PushAdapter::list`](crate::PushAdapter::list));
//! 2. **plan** ([`plan`](fn@crate::converge::plan)): per entity, create / update only the differing
//!    fields / unchanged / adopt / replace / prune, or refuse; every field
//!    change says whether it *drifted* (the platform's value is not the one
//!    adsync last wrote);
//! 3. **carry out**: the plan is checkpointed before the first write and the
//!    push machine runs exactly it, so a crash resumes the same plan.
//!
//! Steps 1 and 2 exist ([`Pusher::plan`](crate::Pusher::plan) reads and
//! plans; `adsync plan` prints it); the push machine does not carry a plan
//! out yet. [`drift`](fn@crate::converge::drift) and
//! [`Pusher::drift`](crate::Pusher::drift) report where the platform no
//! longer holds what adsync wrote (`adsync drift`).

mod drift;
mod fields;
mod plan;
mod planning;

pub use drift::{drift, Drift, DriftedField, EntityDrift};
pub(crate) use fields::instant;
pub use fields::{fields_of, Fields};
pub(crate) use plan::depth;
pub use plan::{
    plan, Action, Desired, FieldChange, Known, Observed, Plan, PlanEntry, PlanOptions, PlanSummary,
    Refusal,
};
pub(crate) use planning::observe_campaign;
pub use planning::CampaignDrift;
