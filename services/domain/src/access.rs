//! Who may do what: the roles of a clinic group's staff, the permissions routes ask for, and the one
//! matrix between them. `docs/security.md` shows the same matrix; a test keeps the two equal.
//!
//! Every role here can reach patient-level data in some form (a reception list, a billing line, an audit
//! entry naming a record), so every role needs the second factor (MHLW 安全管理ガイドライン 6.0).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ClinicId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the group; the only role that can make another owner or issue API tokens.
    Owner,
    /// Runs the clinics: dashboards, clinics, agents, staff.
    Manager,
    /// Billing staff: addon review and exports.
    Billing,
    /// Reception or clinical staff: their assigned clinics' receptions only.
    ClinicStaff,
    /// Read-only reviewer of the audit log.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Owner, Role::Manager, Role::Billing, Role::ClinicStaff, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Billing => "billing",
            Role::ClinicStaff => "clinic_staff",
            Role::Auditor => "auditor",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Owner => "オーナー",
            Role::Manager => "グループ管理者",
            Role::Billing => "請求担当",
            Role::ClinicStaff => "クリニック職員",
            Role::Auditor => "監査担当",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Manager => "Group manager",
            Role::Billing => "Billing",
            Role::ClinicStaff => "Clinic staff",
            Role::Auditor => "Auditor",
        }
    }

    /// The matrix. Adding a permission is a compile error here until every role is decided.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        use Role::*;
        match permission {
            ViewReceptions | FollowUp => matches!(self, Owner | Manager | Billing | ClinicStaff),
            ManageClinics | ManageAgents => matches!(self, Owner | Manager),
            ManageStaff => matches!(self, Owner | Manager),
            ReviewBilling => matches!(self, Owner | Billing),
            ViewAudit => matches!(self, Owner | Auditor),
            ManageApiTokens | ManageRetention | ReopenBilling => matches!(self, Owner),
        }
    }

    /// Roles this role may give to others. Only an owner makes owners; nobody raises themselves.
    pub fn may_grant(self, other: Role) -> bool {
        match self {
            Role::Owner => true,
            Role::Manager => other != Role::Owner,
            _ => false,
        }
    }

    /// Whether users of this role see only the clinics assigned to them.
    pub fn is_clinic_scoped(self) -> bool {
        self == Role::ClinicStaff
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// What a route needs. Routes name one of these; the matrix above decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Reception lists and dashboards built from them (patient-level data).
    ViewReceptions,
    /// Add clinics, set their オン資 start date.
    ManageClinics,
    /// Issue enrollment codes, revoke agents.
    ManageAgents,
    /// Invite staff, change roles and clinic assignments, disable accounts.
    ManageStaff,
    /// Review, adjust and export addon claims.
    ReviewBilling,
    /// Read and export the audit log.
    ViewAudit,
    /// Issue and revoke integration API tokens.
    ManageApiTokens,
    /// Say how long the group's visit records must be kept (3 or 5 years; see `retention`).
    ManageRetention,
    /// Reopen a closed billing month (with a reason; the clerk who closed it cannot undo it alone).
    ReopenBilling,
    /// Work through receptions whose result was not valid (資格無効 follow-up) and set their status.
    FollowUp,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::ViewReceptions,
        Permission::ManageClinics,
        Permission::ManageAgents,
        Permission::ManageStaff,
        Permission::ReviewBilling,
        Permission::ViewAudit,
        Permission::ManageApiTokens,
        Permission::ManageRetention,
        Permission::ReopenBilling,
        Permission::FollowUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewReceptions => "view_receptions",
            Permission::ManageClinics => "manage_clinics",
            Permission::ManageAgents => "manage_agents",
            Permission::ManageStaff => "manage_staff",
            Permission::ReviewBilling => "review_billing",
            Permission::ViewAudit => "view_audit",
            Permission::ManageApiTokens => "manage_api_tokens",
            Permission::ManageRetention => "manage_retention",
            Permission::ReopenBilling => "reopen_billing",
            Permission::FollowUp => "follow_up",
        }
    }
}

/// The scopes an integration API token may carry. A token acts with the intersection of its scopes and
/// its creator's current role, so demoting the creator narrows the token too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ApiScope {
    #[serde(rename = "receptions:read")]
    ReceptionsRead,
    #[serde(rename = "clinics:read")]
    ClinicsRead,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "usage:read")]
    UsageRead,
    #[serde(rename = "billing:read")]
    BillingRead,
    #[serde(rename = "fleet:read")]
    FleetRead,
    #[serde(rename = "alerts:read")]
    AlertsRead,
}

impl ApiScope {
    pub const ALL: [ApiScope; 7] = [
        ApiScope::ReceptionsRead,
        ApiScope::ClinicsRead,
        ApiScope::AuditRead,
        ApiScope::UsageRead,
        ApiScope::BillingRead,
        ApiScope::FleetRead,
        ApiScope::AlertsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::ReceptionsRead => "receptions:read",
            ApiScope::ClinicsRead => "clinics:read",
            ApiScope::AuditRead => "audit:read",
            ApiScope::UsageRead => "usage:read",
            ApiScope::BillingRead => "billing:read",
            ApiScope::FleetRead => "fleet:read",
            ApiScope::AlertsRead => "alerts:read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The permission the scope stands for.
    pub fn permission(self) -> Permission {
        match self {
            ApiScope::ReceptionsRead | ApiScope::ClinicsRead | ApiScope::UsageRead | ApiScope::AlertsRead => {
                Permission::ViewReceptions
            }
            ApiScope::AuditRead => Permission::ViewAudit,
            ApiScope::BillingRead => Permission::ReviewBilling,
            ApiScope::FleetRead => Permission::ManageAgents,
        }
    }
}

/// The clinics a user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClinicAccess {
    All,
    Only(Vec<ClinicId>),
}

impl ClinicAccess {
    pub fn of(role: Role, assigned: &[ClinicId]) -> Self {
        if role.is_clinic_scoped() { ClinicAccess::Only(assigned.to_vec()) } else { ClinicAccess::All }
    }

    pub fn includes(&self, clinic: ClinicId) -> bool {
        match self {
            ClinicAccess::All => true,
            ClinicAccess::Only(list) => list.contains(&clinic),
        }
    }
}

/// The matrix as a Markdown table, for `docs/security.md` (a test compares them).
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    for permission in Permission::ALL {
        out.push_str(&format!("\n| {} |", permission.as_str()));
        for role in Role::ALL {
            out.push_str(if role.allows(permission) { " ✓ |" } else { " — |" });
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_owners_make_owners_and_staff_grant_nothing() {
        assert!(Role::Owner.may_grant(Role::Owner));
        assert!(!Role::Manager.may_grant(Role::Owner));
        assert!(Role::Manager.may_grant(Role::Billing));
        for role in [Role::Billing, Role::ClinicStaff, Role::Auditor] {
            assert!(Role::ALL.iter().all(|r| !role.may_grant(*r)));
        }
    }

    #[test]
    fn auditor_reads_only_the_audit_log() {
        let allowed: Vec<_> = Permission::ALL.into_iter().filter(|p| Role::Auditor.allows(*p)).collect();
        assert_eq!(allowed, vec![Permission::ViewAudit]);
    }

    #[test]
    fn the_documented_matrix_is_the_enforced_one() {
        let doc = include_str!("../../../docs/security.md");
        assert!(
            doc.contains(&matrix_markdown()),
            "docs/security.md must contain this table exactly:\n{}",
            matrix_markdown()
        );
    }
}
