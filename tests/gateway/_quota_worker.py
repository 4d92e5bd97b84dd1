"""One gateway process spending a quota kept in the store (`test_quotas`): it makes ``N``
concurrent calls of a quota'd tool and prints how many ran."""

from __future__ import annotations

import asyncio
import sys

from opsgate.gateway import Gateway, StoreQuotaLedger
from opsgate.policy import load_policy
from opsgate.store import open_store
from tests.conftest import BELT
from tests.gateway.test_quotas import QUOTA_POLICY


async def main(url: str, calls: int) -> int:
    store = open_store(url, migrate=False, create=False)
    gateway = Gateway(
        BELT, load_policy("q", BELT, text=QUOTA_POLICY), quotas=StoreQuotaLedger(store)
    )
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="mail bo@example.com")
    outcomes = await asyncio.gather(
        *(
            gateway.call(run, "send", {"to": "bo@example.com", "body": f"note {i}"})
            for i in range(calls)
        )
    )
    gateway.close()
    store.close()
    return sum(1 for o in outcomes if o.ok)


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
