//! What the audit log records: every action code, with what it means for people, in one place. A handler
//! names an action by its variant, so an action cannot be written without a label for the log's viewer,
//! and the codes stored (which filters match by prefix) never drift from those the viewer knows.

macro_rules! actions {
    ($($variant:ident => $code:literal, $ja:literal, $en:literal;)+) => {
        /// One kind of audited action.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($variant,)+
        }

        impl AuditAction {
            /// Every action, in the order the catalogue lists them.
            pub const ALL: &[AuditAction] = &[$(AuditAction::$variant,)+];

            /// The code stored in the log, e.g. `billing.close`.
            pub fn code(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $code,)+
                }
            }

            pub fn label_ja(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $ja,)+
                }
            }

            pub fn label_en(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $en,)+
                }
            }

            /// The action a stored code names; `None` for a code this catalogue does not know.
            pub fn from_code(code: &str) -> Option<AuditAction> {
                match code {
                    $($code => Some(AuditAction::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

actions! {
    Signin => "signin", "サインイン", "Signed in";
    SigninPassword => "signin.password", "パスワード入力", "Password step";
    SigninTotp => "signin.totp", "確認コード入力", "Code step";
    SigninRecoveryCode => "signin.recovery_code", "リカバリーコード入力", "Recovery code step";
    RecoveryCodesIssue => "recovery_codes.issue", "リカバリーコードの発行", "Recovery codes issued";
    RecoveryCodesRegenerate => "recovery_codes.regenerate", "リカバリーコードの再発行", "Recovery codes replaced";
    Signout => "signout", "サインアウト", "Signed out";
    TenantSignup => "tenant.signup", "新規登録", "Signed up";
    EmailVerify => "email.verify", "メールアドレス確認", "E-mail verified";
    InviteAccept => "invite.accept", "招待の受諾", "Invitation accepted";
    PasswordChange => "password.change", "パスワード変更", "Password changed";
    PasswordReset => "password.reset", "パスワード再設定", "Password reset";
    PasswordResetRequested => "password.reset_requested", "パスワード再設定の依頼", "Password reset asked";
    TotpEnable => "totp.enable", "二要素認証の設定", "Two-factor set up";
    SessionsRevoke => "sessions.revoke", "セッション終了", "Sessions ended";
    StaffSessionsRevoke => "staff.sessions_revoke", "セッション終了", "Sessions ended";
    StaffInvite => "staff.invite", "スタッフ招待", "Staff invited";
    StaffRole => "staff.role", "役割変更", "Role changed";
    StaffDisable => "staff.disable", "アカウント無効化", "Account disabled";
    StaffEnable => "staff.enable", "アカウント有効化", "Account enabled";
    StaffTotpReset => "staff.totp_reset", "二要素認証のリセット", "Two-factor reset";
    ClinicCreate => "clinic.create", "医療機関の登録", "Clinic added";
    ClinicUpdate => "clinic.update", "医療機関の変更", "Clinic changed";
    ClinicHours => "clinic.hours", "診療時間・アラートの設定", "Opening hours and alerts set";
    DeviceAlertRaised => "device_alert.raised", "端末アラートの通知", "Agent alert sent";
    DeviceAlertResolved => "device_alert.resolved", "端末アラートの復旧通知", "Agent alert over";
    ClinicTerminal => "clinic.terminal", "資格確認端末の情報の設定", "Terminal details set";
    RadarNotice => "radar.notice", "期限の通知", "Expiry notice";
    SummaryWeekly => "summary.weekly", "週間まとめの送信", "Weekly summary sent";
    FollowupsView => "followups.view", "資格無効フォローアップの閲覧", "Follow-up viewed";
    FollowupsExport => "followups.export", "資格無効フォローアップの出力", "Follow-up exported";
    FollowupStatus => "followup.status", "フォローアップの状態変更", "Follow-up status set";
    AgentEnrollmentCode => "agent.enrollment_code", "登録コード発行", "Enrollment code";
    AgentRevoke => "agent.revoke", "エージェント停止", "Agent revoked";
    ApiTokenCreate => "api_token.create", "APIトークン発行", "API token created";
    ApiTokenRevoke => "api_token.revoke", "APIトークン失効", "API token revoked";
    WebhookCreate => "webhook.create", "Webhook 送信先の追加", "Webhook endpoint added";
    WebhookRotateSecret => "webhook.rotate_secret", "Webhook 秘密鍵の更新", "Webhook secret rotated";
    WebhookDisable => "webhook.disable", "Webhook 送信先の停止", "Webhook endpoint disabled";
    WebhookEnable => "webhook.enable", "Webhook 送信先の再開", "Webhook endpoint enabled";
    WebhookEndpointDisabled => "webhook.endpoint_disabled", "Webhook 送信先の自動停止", "Webhook endpoint disabled after failures";
    WebhookTest => "webhook.test", "Webhook テスト送信", "Webhook test sent";
    WebhookReplay => "webhook.replay", "Webhook 再送", "Webhook delivery replayed";
    VisitsRead => "visits.read", "受付一覧の API 取得", "Visits read via API";
    BillingRead => "billing.read", "締めた請求月の API 取得", "Closed billing month read via API";
    UkeImported => "uke.imported", "レセ電の取り込み", "レセ電 file imported";
    AuditView => "audit.view", "監査ログ閲覧", "Audit log viewed";
    AuditExport => "audit.export", "監査ログ出力", "Audit log exported";
    ReceptionsView => "receptions.view", "受付閲覧", "Receptions viewed";
    ReceptionsRead => "receptions.read", "受付閲覧", "Receptions viewed";
    DashboardView => "dashboard.view", "利用率閲覧", "Usage viewed";
    BillingView => "billing.view", "請求確認の閲覧", "Billing viewed";
    BillingApprove => "billing.approve", "請求確認", "Visit approved";
    // Written by versions before `billing.bulk`; kept so their entries still read.
    BillingApproveBulk => "billing.approve_bulk", "一括確認", "Visits approved";
    BillingAdjust => "billing.adjust", "請求の修正", "Visit adjusted";
    BillingClose => "billing.close", "月の締め", "Month closed";
    BillingReopen => "billing.reopen", "締めの解除", "Month reopened";
    BillingExport => "billing.export", "請求データ出力", "Billing export";
    BillingDownload => "billing.download", "請求データ出力", "Billing export";
    BillingStandards => "billing.standards", "届出の登録", "Standards recorded";
    BillingUsageRate => "billing.usage_rate", "利用率の登録", "Usage rate recorded";
    UsageAlert => "usage.alert", "利用率の注意メール", "Usage alert";
    RetentionBasis => "retention.basis", "保存期間の設定", "Retention set";
    RetentionPurge => "retention.purge", "保存期間経過分の削除", "Retention purge";
    AccessDenied => "access.denied", "アクセス拒否", "Access denied";
    AgentConfigDownload => "agent.config_download", "エージェント設定ファイルのダウンロード", "Agent settings file downloaded";
    BillingBulk => "billing.bulk", "一括操作", "Bulk review";
    BillingDifferences => "billing.differences", "レセ電との差異の出力", "Differences exported";
    BillingOfficialUsage => "billing.official_usage", "公式の利用率の登録", "Official usage rate recorded";
    DemoSeedOwner => "demo.seed_owner", "デモ: オーナーの作成", "Demo: owner created";
    DemoSeedBilling => "demo.seed_billing", "デモ: 届出・利用率の登録", "Demo: standards and rates recorded";
    DemoOfficialUsage => "demo.official_usage", "デモ: 公式の利用率の登録", "Demo: official rates recorded";
    BenchSeed => "bench.seed", "ベンチマーク: データ作成", "Benchmark: data seeded";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_reads_back() {
        let mut codes = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(codes.insert(a.code()), "{} twice", a.code());
            assert_eq!(AuditAction::from_code(a.code()), Some(*a));
            assert!(!a.label_ja().is_empty() && !a.label_en().is_empty());
        }
        assert_eq!(AuditAction::from_code("no.such"), None);
    }
}
