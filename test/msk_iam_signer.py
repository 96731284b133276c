"""AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python, pinned in the
Makefile) on the cases given as JSON on stdin, at the clock each case gives:
what native/core/src/sign_in/msk_iam.rs must reproduce byte for byte.

stdin:  [{"access_key_id", "secret_access_key", "session_token" (or null),
          "region", "unix_s"}, ...]
stdout: {"user_agent": ..., "tokens": [{"token", "expiry_ms"}, ...]}
"""
import datetime
import json
import sys

import botocore.auth
from botocore.credentials import Credentials
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider


def token_at(case):
    moment = datetime.datetime.fromtimestamp(case["unix_s"], datetime.timezone.utc).replace(tzinfo=None)
    # botocore reads the clock through this function when it signs.
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: moment
    credentials = Credentials(case["access_key_id"], case["secret_access_key"], case["session_token"])
    # The module-private function every generate_auth_token* variant ends in.
    construct = getattr(MSKAuthTokenProvider, "__construct_auth_token")
    token, expiry_ms = construct(case["region"], credentials)
    return {"token": token, "expiry_ms": expiry_ms}


def main():
    cases = json.load(sys.stdin)
    user_agent = getattr(MSKAuthTokenProvider, "__get_user_agent__")()
    json.dump({"user_agent": user_agent, "tokens": [token_at(case) for case in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
