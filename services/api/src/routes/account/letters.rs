//! The e-mails accounts receive, in Japanese and English in one body (the recipient's language is not
//! known before they sign in). They carry a one-time link and never patient data.

use crate::{ApiError, AppState};

/// One e-mail: its subject and plain-text body.
pub(crate) struct Letter {
    subject: &'static str,
    body: String,
}

impl Letter {
    /// The signup's verification link (valid for `VERIFY_TTL`).
    pub(crate) fn verification(name: &str, link: &str) -> Self {
        Letter {
            subject: "【Onshi Cloud】メールアドレスの確認 / Confirm your e-mail address",
            body: format!(
                "{name} 様\n\nOnshi Cloud への登録ありがとうございます。次のリンクからメールアドレスを確認してください（24時間有効）。\n{link}\n\n\
                 Thank you for signing up for Onshi Cloud. Confirm your e-mail address with the link above (valid for 24 hours).\n\n\
                 心当たりがない場合は、このメールを破棄してください。 If this was not you, ignore this e-mail.\n"
            ),
        }
    }

    /// A password-reset link (valid for `RESET_TTL`).
    pub(crate) fn reset(link: &str) -> Self {
        Letter {
            subject: "【Onshi Cloud】パスワードの再設定 / Reset your password",
            body: format!(
                "パスワード再設定のリクエストを受け付けました。次のリンクから30分以内に再設定してください。\n{link}\n\n\
                 We received a request to reset your password. Use the link above within 30 minutes.\n\n\
                 再設定には二要素認証のコードも必要です。 You will also need your two-factor code.\n"
            ),
        }
    }

    /// Someone signed up with an address that already has an account: its owner is told, and the
    /// person signing up sees the same page as for a free address.
    pub(crate) fn already_registered(signin: &str, forgot: &str) -> Self {
        Letter {
            subject: "【Onshi Cloud】登録のお知らせ / About a sign-up with your address",
            body: format!(
                "このメールアドレスで Onshi Cloud への新規登録がありましたが、このアドレスには既にアカウントがあります。\n\
                 ご本人の場合はサインインしてください: {signin}\nパスワードをお忘れの場合: {forgot}\n\n\
                 Someone tried to sign up for Onshi Cloud with this address, which already has an account. If it was\n\
                 you, sign in ({signin}) or reset your password ({forgot}).\n\n\
                 心当たりがない場合は、このメールを破棄してください。 If this was not you, ignore this e-mail.\n"
            ),
        }
    }

    /// An invitation from a colleague (valid for `INVITE_TTL`).
    pub(crate) fn invitation(name: &str, inviter: &str, group: &str, link: &str) -> Self {
        Letter {
            subject: "【Onshi Cloud】招待 / You are invited",
            body: format!(
                "{name} 様\n\n{group} の {inviter} さんから Onshi Cloud に招待されました。次のリンクからパスワードを設定してください（7日間有効）。\n{link}\n\n\
                 {inviter} of {group} invited you to Onshi Cloud. Set your password with the link above (valid for 7 days).\n"
            ),
        }
    }

    /// Sends the letter to `to`; a mail server that does not take it is a 503 for the request.
    pub(crate) async fn send(self, state: &AppState, to: &str) -> Result<(), ApiError> {
        state.mailer.send(to, self.subject, self.body).await.map_err(ApiError::unavailable)
    }
}

/// The absolute address of `path` on this service, for links in e-mails.
pub(crate) fn link(state: &AppState, path: &str) -> String {
    format!("{}{path}", state.public_url.trim_end_matches('/'))
}
