"""When two email addresses are the same person's: one definition for every service that compares them.

identity keeps one account per key (signup, login) and orgs matches invitations by it (invite,
accept). Were the two to compare differently, an address identity lets someone register beside
another could still pass orgs' check for the other's invitation.
"""
import unicodedata

# Keys are stored and unique-indexed; an address whose key is longer than an address may be is
# refused at the boundary (NFKC can expand one character into many, e.g. U+FDFA into 18).
EMAIL_KEY_MAX_LENGTH = 320


def email_key(email):
    """`email` as it is compared: NFKC (fullwidth 'ａ', the Kelvin sign and other compatibility forms
    become the letter they stand for), then casefold ('A' is 'a', 'ß' is 'ss').

    Look-alikes from other scripts (Cyrillic 'а' for Latin 'a') stay different: they are other
    addresses, delivered to other mailboxes.
    """
    return unicodedata.normalize("NFKC", email).casefold()
