"""Who gets an update: the live subscriptions, indexed by task and by owner. No sockets."""

from __future__ import annotations

from services.notifier.subscriptions import Subscription, SubscriptionRegistry

T1 = "01900000-0000-7000-8000-000000000001"
T2 = "01900000-0000-7000-8000-000000000002"


def sub(
    connection: str, sub_id: str, owner: str = "dev", tasks: set[str] | None = None
) -> Subscription[str]:
    return Subscription(connection, sub_id, owner, None if tasks is None else frozenset(tasks))


def ids(subs: object) -> set[tuple[str, str]]:
    return {(s.connection, s.sub_id) for s in subs}  # type: ignore[attr-defined]


def test_a_change_reaches_the_subscriptions_naming_the_task_and_the_owners_scope_all() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("b", "s1", tasks={T2}))
    registry.add(sub("c", "all"))
    registry.add(sub("d", "all", owner="eve"))

    assert ids(registry.matching(T1, "dev")) == {("a", "s1"), ("c", "all")}
    assert ids(registry.matching(T2, "dev")) == {("b", "s1"), ("c", "all")}


def test_a_task_of_another_owner_reaches_nobody_even_a_subscription_naming_it() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("c", "all"))

    assert ids(registry.matching(T1, "eve")) == set()


def test_removed_and_narrowed_subscriptions_get_nothing_more() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    one, every = sub("a", "s1", tasks={T1, T2}), sub("a", "all")
    registry.add(one)
    registry.add(every)
    assert len(registry) == 2

    registry.narrow(one, {T2})
    registry.remove(every)
    registry.remove(every)  # twice is harmless

    assert ids(registry.matching(T1, "dev")) == {("a", "s1")}
    assert ids(registry.matching(T2, "dev")) == set()
    assert len(registry) == 1
    registry.remove(one)
    assert len(registry) == 0
    assert registry.task_ids() == set()


def test_deletes_are_offered_to_every_subscription_that_may_hold_the_task() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("b", "s1", tasks={T2}))
    registry.add(sub("c", "all", owner="eve"))

    assert ids(registry.following(T1)) == {("a", "s1"), ("c", "all")}
    assert registry.scope_all_owners() == {"eve"}


def test_an_admin_subscription_gets_every_owners_changes() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(Subscription("admin", "all", None, None))
    registry.add(Subscription("admin", "ids", None, frozenset({T1})))
    registry.add(sub("eve", "all", owner="eve"))
    assert ids(registry.matching(T1, "dev")) == {("admin", "all"), ("admin", "ids")}
    assert ids(registry.matching(T2, "eve")) == {("admin", "all"), ("eve", "all")}
    assert registry.scope_all_owners() == {None, "eve"}
