"""User-facing texts, in WHMCS's wording, shared by the host and the modules."""

WRONG_FACTOR_CLIENT = (
    "The second factor you supplied was incorrect. Please try again. "
    "You have {attempts} attempts remaining."
)
WRONG_FACTOR = "The second factor you supplied was incorrect. Please try again."
WRONG_FACTOR_ADMIN = "Second factor invalid. Please try again."
# Not in WHMCS (it says "incorrect"): a right code used once already, typically the one
# just typed at enrolment. Saying so spares the person a search for a fault that is not there.
CODE_ALREADY_USED = (
    "That code has already been used. Please wait for your app to show the next code, "
    "then enter it."
)
SECOND_FACTOR_REQUIRED_CLIENT = "Your second factor is required to complete login."
SECOND_FACTOR_REQUIRED_ADMIN = "Your second factor is required to complete the login."
ENTER_BACKUP_CODE = "Enter Your Backup Code to Login"
CANT_ACCESS_DEVICE = "Can't Access Your 2nd Factor Device?"
LOGIN_USING_BACKUP_CODE = "Login using Backup Code"
BACKUP_LOGIN_OK = "Login via Backup Code Successful. Backup Codes are valid once only. It will now be reset."
NEW_BACKUP_CODE = "Your New Backup Code is"
BACKUP_CODE_IS = "Your Backup Code is"
BACKUP_CODE_ADVICE_CLIENT = (
    "Treat the backup code the same as you would your password. "
    "We recommend saving it with a password manager."
)
BACKUP_CODE_ADVICE_ADMIN = "Write this down on paper and keep it safe."
ENABLED = "Two-Factor Authentication is now enabled"
DISABLED = "Two-Factor Authentication has now been disabled for your account."
PASSWORD_INCORRECT = "Password incorrect. Please try again."
NOT_ENABLED = "Two-Factor Authentication is not enabled."
ACTIVATION_FAILED_CLIENT = "Could not activate Two-Factor Authentication. Please try again later."
ACTIVATION_FAILED_ADMIN = "An error occurred while activating 2FA. Please try again."
MODULE_LOAD_ERROR = "An error occurred loading the module. Please try again."
BAD_MODULE_ADMIN = "Bad 2 Factor Auth Module. Please contact support."
FORCED_CLIENT = (
    "For your security, we require that you must enable Two-Factor Authentication "
    "before you can continue."
)
FORCED_ADMIN = (
    "Your administrator has enforced that you must enable Two-Factor Authentication "
    "before you can continue."
)
LOCKED = "Login Attempts Exceeded. Please try again after {until}."
# Not in WHMCS, whose backup-code page is a dead end during a lockout: backup codes have
# their own budget, so the person is told they still work, or until when they do not.
BACKUP_WORKS_WHILE_LOCKED = "Your backup code still works while codes are locked."
BACKUP_CODES_LOCKED = (
    "Too many wrong backup codes. Backup codes are locked until {until}; "
    "please try again after that."
)
TOTP_CONNECT_APP = "Connect your app"
TOTP_SETUP_INSTRUCTIONS = (
    "Enter the 6-digit code that the application generates to verify and complete setup."
)
TOTP_ENTER_CODE = "Enter authentication code"
TOTP_SETUP_MISMATCH = (
    "The code you entered did not match what was expected. "
    "Please re-scan or enter the code and try again."
)
DUO_UNAVAILABLE = "Duo® Security 2FA is unavailable at this time."
DUO_DISRUPTION = "Duo® Security is experiencing a service disruption. Log in with your backup code."
DUO_SETUP_NEXT_LOGIN = (
    "You will be asked to configure your Duo Security Two-Factor Authentication "
    "the next time you login."
)
YUBICO_INVALID = "The YubiKey value entered could not be validated successfully. Please try again."
YUBICO_SAVED = "Yubico Key Detected & Saved Successfully!"
