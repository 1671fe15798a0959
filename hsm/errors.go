//go:build cgo

package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// errClosed: the module of a token was closed.
var errClosed = errors.New("the PKCS#11 module is closed")

// isSessionGone reports errors after which a session is unusable.
func isSessionGone(err error) bool {
	return isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isCode(err, pkcs11.CKR_SESSION_CLOSED) ||
		isCode(err, pkcs11.CKR_DEVICE_REMOVED) || isCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// isCode reports a PKCS#11 error with return value code.
func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// loginError maps the result of C_Login on token label to this package's
// errors: nil when the token is logged in (already logged in counts),
// ErrWrongPIN for a PIN the token refuses, and an error saying what to do
// for a locked or missing user PIN. The PIN itself is never in the error.
func loginError(label string, err error) error {
	switch {
	case err == nil, isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		return nil
	case isCode(err, pkcs11.CKR_PIN_INCORRECT), isCode(err, pkcs11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("hsm: token %q: log in: %w (%v)", label, ErrWrongPIN, err)
	case isCode(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("hsm: token %q: log in: the user PIN is locked after too many wrong PINs; the security officer must unlock it (%v)", label, err)
	case isCode(err, pkcs11.CKR_USER_PIN_NOT_INITIALIZED):
		return fmt.Errorf("hsm: token %q: log in: the token has no user PIN yet; initialise it first (%v)", label, err)
	}
	return fmt.Errorf("hsm: token %q: log in: %w", label, err)
}
