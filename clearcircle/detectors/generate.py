"""A seeded generator of a heavy-tailed social graph with planted abuse and its known truth.

Why it exists: precision and recall of the batch detectors (issue 9) need data whose truth is known, and the
scale targets need 10M-100M edges made in seconds, so everything is vectorised numpy written straight to
Parquet (the same tables `export` writes from the store), in chunks so 100M edges fit in flat memory.

What it writes into the output folder (ids are integers; times are epoch milliseconds):

- ``follows``: src, dst, ts. Background: activity per follower is log-normal (a few accounts follow thousands
  of targets), target popularity is Zipf (a few targets have most followers), times uniform over the period;
  organic *spikes* (a mid target goes viral: 30-300 followers within two hours, drawn by activity, so heavy
  followers join many spikes). Planted: lockstep blocks (20-80 bought accounts, each block serving 8-20
  client targets; each client gets its followers in one burst of 10-30 minutes, every member taking part
  with probability 0.85; a third of the bursts straddle an hour boundary); camouflage: every bought account
  also follows 10-60 popular targets at random times.
- ``unfollows``: src, dst, ts (own random stream: the follows do not change with them). One organic follow
  in a hundred is undone later; every fourth block's first client loses all its bought followers after the
  campaign (no longer an inflated target in the truth, the block still bought), its second client half.
- ``referrals``: src (referrer), dst (referee), ts, reward, fee. Background: one-level programmes (a brand
  and its customers; a customer who invites a friend is rewarded for that friend only, so chains happen
  but only the direct referrer is ever paid, and nobody pays to join) and person-to-person invitations.
  Planted: MLM trees (depth 4-6, fan-out 2-5); most pay three levels of upline per recruit (one referral
  row per paid ancestor), some pay one level but charge a joining fee that funds the reward.
- ``shares``: id, src, item, ts, owner. A share whose item is another share's id is a reshare; the cascade
  root is the first item that is not a share. Background: Zipf item popularity; cascades spread over hours
  to days; every other share is a reshare of an earlier share (deep trees). Planted: induced bursts: 40-200
  accounts share the item itself (almost no reshares) within 30 minutes, then a small organic tail; half of
  the items are induced-sharing posts themselves, half follow their owner's reward post by 10 minutes to 20
  hours. Background trap: as many organic fast bursts, as fast and as direct, with no trigger (a third of
  their owners posted a reward post 2-6 days before or some hours after: outside the bound).
- ``posts``: id, author, ts, induced, reward (what the post's decision said). Every item is a post; the
  reward posts; one item owner in a hundred also posted induced-sharing text nobody took up.
- ``friend_requests``: src, dst, ts, accepted, accepted_ts. Background: friendships in local circles (friends
  share friends); sociable people asking 40-150 friends of friends in 1-2 days (most accept; a quarter are
  less liked: 15% accept); newcomers asking 25-60 acquaintances with no mutual friend (most accept).
  Planted: spammers asking 80-400 random people in 1-4 days, 2-20% accept.
- ``links``: account, kind, value (hashed identifiers as integers); ``accounts``: account, registered_ms,
  banned_ms (null: not banned). Background: most accounts have their own device and phone; households share
  a device; banned accounts, some sharing a device with a relative registered before the ban (not evasion);
  a few "internet cafe" devices shared by 100-300 accounts including a banned one (a hub, not evasion).
  Planted: evasion chains: 1-4 accounts registered after a ban, the first sharing a device, phone or
  payment value with the banned account, each next one sharing a value with the previous.
- ``truth.json``: the planted ids per detector (lockstep accounts and targets, MLM members and organisers,
  evaders, burst items, friend spammers) and the sizes.

``edges`` is the total number of rows over the five edge tables: 78% follows, 14% shares, 3% referrals,
3% identity links, 2% friend requests (planted rows included); unfollows (about 1% of follows) and posts
(one per item) come on top.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
SHARE_ID_BASE = 10**12  # share ids live above every account and item id
CHUNK = 5_000_000
KINDS = ("device_id", "phone", "payment_id", "id_number")


@dataclass
class Truth:
    """What was planted, by detector; ids as strings (what findings carry)."""

    lockstep_accounts: set[str] = field(default_factory=set)
    lockstep_targets: set[str] = field(default_factory=set)
    mlm_members: set[str] = field(default_factory=set)
    mlm_organisers: set[str] = field(default_factory=set)
    evaders: set[str] = field(default_factory=set)
    burst_items: set[str] = field(default_factory=set)
    friend_spammers: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {k: sorted(v) for k, v in vars(self).items() if isinstance(v, set)}
        out["sizes"] = self.sizes
        return out

    @classmethod
    def read(cls, path: Path) -> Truth:
        data = json.loads(Path(path).read_text())
        sizes = data.pop("sizes", {})
        return cls(**{k: set(v) for k, v in data.items()}, sizes=sizes)


class _Ids:
    """Hands out consecutive integer account ids, so each population has its own range."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> np.ndarray:
        out = np.arange(self.next, self.next + n, dtype=np.int64)
        self.next += n
        return out


class _Writer:
    """Appends numpy column chunks to one Parquet file, buffered so row groups stay large (many tiny row
    groups, one per planted burst, would slow every reader down)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.rows = 0
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def write(self, **cols: np.ndarray) -> None:
        n = len(next(iter(cols.values())))
        if n:
            self.buffer.append(pa.table({f.name: cols[f.name] for f in self.schema}, schema=self.schema))
            self.buffered += n
            self.rows += n
            if self.buffered >= 1_000_000:
                self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.concat_tables(self.buffer))
            self.buffer, self.buffered = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


FOLLOWS = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("ts", pa.int64())])
POSTS = pa.schema([("id", pa.int64()), ("author", pa.int64()), ("ts", pa.int64()), ("induced", pa.bool_()),
                   ("reward", pa.bool_())])
FRIEND_REQUESTS = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("ts", pa.int64()), ("accepted", pa.bool_()),
                             ("accepted_ts", pa.int64())])
REFERRALS = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("ts", pa.int64()), ("reward", pa.float64()),
                       ("fee", pa.float64())])
SHARES = pa.schema([("id", pa.int64()), ("src", pa.int64()), ("item", pa.int64()), ("ts", pa.int64()),
                    ("owner", pa.int64())])
LINKS = pa.schema([("account", pa.int64()), ("kind", pa.string()), ("value", pa.int64())])
ACCOUNTS = pa.schema([("account", pa.int64()), ("registered_ms", pa.int64()), ("banned_ms", pa.int64())])


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        n = min(CHUNK, total)
        yield n
        total -= n


def _weights(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    w = rng.lognormal(0.0, sigma, n)
    return w / w.sum()


def _zipf(n: int, s: float, offset: float = 5.0) -> np.ndarray:
    p = 1.0 / (np.arange(n) + offset) ** s
    return p / p.sum()


def _pick(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Draw indices from a distribution given by its cumulative sum (faster than choice(p=...) when repeated)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1]), len(cdf) - 1)


def generate_graph(edges: int, out: Path, seed: int = 7, days: int = 30, follows_only: bool = False) -> Truth:
    """Write the five tables and truth.json for about `edges` edge rows into `out`; return the truth.
    `follows_only`: every edge is a follow and only `follows` and `unfollows` are written (the lockstep
    benchmark)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = _Ids()
    truth = Truth()
    period = days * DAY_MS
    n_follows = edges if follows_only else int(edges * 0.78)
    n_shares = int(edges * 0.14)
    n_refs = int(edges * 0.03)
    n_friends = int(edges * 0.02)
    n_links = edges - n_follows - n_shares - n_refs - n_friends

    # -- accounts: public targets and people -----------------------------------------------------------------
    n_targets = max(300, n_follows // 400)
    n_users = max(3000, n_follows // 25)
    targets = ids.take(n_targets)  # rank order: targets[0] is the most popular
    users = ids.take(n_users)
    activity_cdf = np.cumsum(_weights(rng, n_users, 1.3))
    popularity_cdf = np.cumsum(_zipf(n_targets, 1.1))

    _follows(rng, ids, out, truth, targets, users, activity_cdf, popularity_cdf, n_follows, period,
             _Unfollows(out / "unfollows.parquet", np.random.default_rng([seed, 1])))
    if not follows_only:
        _referrals(rng, ids, out, truth, users, n_refs, period)
        _shares(rng, out, truth, users, n_shares, period)
        _links(rng, ids, out, truth, users, n_links, period)
        _friend_requests(np.random.default_rng([seed, 2]), ids, out, truth, users, n_friends, period)
    truth.sizes["accounts"] = ids.next
    (out / "truth.json").write_text(json.dumps(truth.to_json()))
    return truth


class _Unfollows:
    """Unfollows, drawn from their own random stream so the follows are the same with or without them: some
    followers leave later (a follow undone 1 hour to 10 days after it was made)."""

    def __init__(self, path: Path, rng: np.random.Generator) -> None:
        self.writer = _Writer(path, FOLLOWS)
        self.rng = rng

    def undo(self, src: np.ndarray, dst: np.ndarray, ts: np.ndarray, share: float) -> None:
        keep = self.rng.random(len(src)) < share
        n = int(keep.sum())
        self.writer.write(src=src[keep], dst=dst[keep], ts=ts[keep] + self.rng.integers(HOUR_MS, 10 * DAY_MS, n))


def _follows(rng: np.random.Generator, ids: _Ids, out: Path, truth: Truth, targets: np.ndarray, users: np.ndarray,
             activity_cdf: np.ndarray, popularity_cdf: np.ndarray, n_follows: int, period: int,
             unfollows: _Unfollows) -> None:
    n_targets = len(targets)
    writer = _Writer(out / "follows.parquet", FOLLOWS)
    # planted first, so the background fills the rest of the budget
    n_bought = max(200, n_follows // 50_000)
    planted = 0
    mid_lo, mid_hi = n_targets // 10, n_targets  # clients are ordinary, less popular accounts
    popular = max(10, n_targets // 50)
    bought: list[np.ndarray] = []
    inflated: set[str] = set()  # clients still followed by their bought followers (truth)
    left = n_bought
    while left > 0:
        size = int(min(left, rng.integers(20, 81)))
        if left - size < 20:
            size = left
        block = ids.take(size)
        left -= size
        bought.append(block)
        clients = rng.choice(np.arange(mid_lo, mid_hi), size=int(rng.integers(8, 21)), replace=False)
        for n_client, c in enumerate(clients):
            duration = int(rng.integers(10, 31)) * MIN_MS
            start = int(rng.integers(0, period - 2 * HOUR_MS))
            if rng.random() < 1 / 3:  # straddle an hour boundary on purpose
                start = (start // HOUR_MS + 1) * HOUR_MS - duration // 2
            members = block[rng.random(size) < 0.85]
            ts = T0_MS + start + rng.integers(0, duration, len(members))
            writer.write(src=members, dst=np.full(len(members), targets[c]), ts=ts)
            planted += len(members)
            # every fourth block's service ends: its first client loses all its bought followers later (no
            # longer inflated), its second loses half of them (still inflated)
            undone = len(bought) % 4 == 1 and n_client < 2
            if undone:
                unfollows.undo(members, np.full(len(members), targets[c]), ts + duration, 1.0 if n_client == 0 else 0.5)
            if not (undone and n_client == 0):
                inflated.add(str(targets[c]))
        camo = rng.integers(10, 61, size)  # camouflage: popular targets at random times
        src = np.repeat(block, camo)
        writer.write(src=src, dst=targets[rng.integers(0, popular, len(src))],
                     ts=T0_MS + rng.integers(0, period, len(src)))
        planted += len(src)
    truth.lockstep_accounts.update(str(a) for b in bought for a in b)
    truth.lockstep_targets.update(inflated)

    # organic spikes: a mid target suddenly followed by many, drawn by activity (heavy followers join many)
    n_spikes = max(5, n_targets // 50)
    for _ in range(n_spikes):
        t = targets[int(rng.integers(n_targets // 20, n_targets))]
        k = int(rng.integers(30, 301))
        start = int(rng.integers(0, period - 3 * HOUR_MS))
        members = users[_pick(rng, activity_cdf, k)]
        ts = T0_MS + start + rng.exponential(40 * MIN_MS, k).astype(np.int64).clip(0, 2 * HOUR_MS)
        writer.write(src=members, dst=np.full(k, t), ts=ts)
        planted += k

    for n in _chunks(max(0, n_follows - planted)):
        src, dst, ts = users[_pick(rng, activity_cdf, n)], targets[_pick(rng, popularity_cdf, n)], \
            T0_MS + rng.integers(0, period, n)
        writer.write(src=src, dst=dst, ts=ts)
        unfollows.undo(src, dst, ts, 0.01)  # one organic follow in a hundred is undone later
    writer.close()
    unfollows.writer.close()
    truth.sizes["follows"] = writer.rows
    truth.sizes["unfollows"] = unfollows.writer.rows


def _referrals(rng: np.random.Generator, ids: _Ids, out: Path, truth: Truth, users: np.ndarray, n_refs: int,
               period: int) -> None:
    writer = _Writer(out / "referrals.parquet", REFERRALS)
    written = 0
    # planted MLM trees, each from its own fresh accounts
    n_mlm = max(5, n_refs // 2000)
    for i in range(n_mlm):
        multi_level = i % 3 != 2  # one in three pays a single level but charges a joining fee
        fee = float(rng.choice([99.0, 398.0, 998.0])) if (not multi_level or rng.random() < 0.5) else 0.0
        root = ids.take(1)[0]
        truth.mlm_organisers.add(str(root))
        truth.mlm_members.add(str(root))
        parent_of: dict[int, int] = {}
        depth = {int(root): 0}
        t_of = {int(root): T0_MS + int(rng.integers(0, period // 3))}
        frontier, max_depth = [int(root)], int(rng.integers(4, 7))
        rows: list[tuple[int, int, int, float, float]] = []
        while frontier:
            nxt = []
            for p in frontier:
                if depth[p] >= max_depth:
                    continue
                for c in ids.take(int(rng.integers(2, 6)) if depth[p] < 2 else int(rng.integers(0, 4))):
                    c = int(c)
                    parent_of[c], depth[c] = p, depth[p] + 1
                    t_of[c] = t_of[p] + int(rng.integers(HOUR_MS, 5 * DAY_MS))
                    nxt.append(c)
                    truth.mlm_members.add(str(c))
                    up, level = p, 1
                    while up is not None and level <= (3 if multi_level else 1):
                        reward = round(fee * 0.3 / level, 2) if fee else round(50.0 / level, 2)
                        rows.append((up, c, t_of[c] + level, reward, fee if level == 1 else 0.0))
                        up, level = parent_of.get(up), level + 1
            frontier = nxt
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        writer.write(src=arr[:, 0].astype(np.int64), dst=arr[:, 1].astype(np.int64), ts=arr[:, 2].astype(np.int64),
                     reward=arr[:, 3], fee=arr[:, 4])
        written += len(rows)

    # legitimate one-level programmes: a brand, its customers, some customers inviting friends
    n_users = len(users)
    budget = max(0, n_refs - written)
    n_brands = max(20, budget // 400)
    brands = ids.take(n_brands)
    per_brand = budget // 2 // n_brands
    src, dst, ts, reward = [], [], [], []
    for b in brands:
        customers = users[rng.integers(0, n_users, per_brand)]
        t = T0_MS + rng.integers(0, period, per_brand)
        src.append(np.full(per_brand, b))
        dst.append(customers)
        ts.append(t)
        reward.append(np.full(per_brand, 10.0))
        inviters = rng.random(per_brand) < 0.3  # a customer invites a friend: paid for that friend only
        k = int(inviters.sum())
        src.append(customers[inviters])
        dst.append(users[rng.integers(0, n_users, k)])
        ts.append(t[inviters] + rng.integers(HOUR_MS, 3 * DAY_MS, k))
        reward.append(np.full(k, 10.0))
    if src:
        s, d, t_, r = (np.concatenate(x) for x in (src, dst, ts, reward))
        writer.write(src=s, dst=d, ts=t_, reward=r, fee=np.zeros(len(s)))
        written += len(s)
    rest = max(0, n_refs - written)  # person-to-person invitations, unpaid
    writer.write(src=users[rng.integers(0, n_users, rest)], dst=users[rng.integers(0, n_users, rest)],
                 ts=T0_MS + rng.integers(0, period, rest), reward=np.zeros(rest), fee=np.zeros(rest))
    writer.close()
    truth.sizes["referrals"] = writer.rows


def _shares(rng: np.random.Generator, out: Path, truth: Truth, users: np.ndarray, n_shares: int,
            period: int) -> None:
    writer = _Writer(out / "shares.parquet", SHARES)
    posts = _Writer(out / "posts.parquet", POSTS)
    n_users = len(users)
    next_share = SHARE_ID_BASE
    item_base = 5 * 10**11  # item (post) ids: below share ids, above account ids
    trigger_base = 4 * 10**11  # posts that are not shared themselves (the reward posts)
    n_bursts = max(10, n_shares // 5000)
    written = 0

    def post(ids_: np.ndarray, authors: np.ndarray, ts: np.ndarray, induced: bool, reward: bool = False) -> None:
        n = len(ids_)
        posts.write(id=ids_, author=authors, ts=ts, induced=np.full(n, induced), reward=np.full(n, reward))

    def burst(item: int, owner: int, start: int) -> int:
        """40-200 accounts share the item itself (almost no reshares) within 30 minutes, then a small tail."""
        nonlocal next_share
        k = int(rng.integers(40, 201))
        sharers = users[np.unique(rng.integers(0, n_users, k))]  # choice(replace=False) would permute all users
        k = len(sharers)
        ts = np.sort(start + rng.integers(0, 30 * MIN_MS, k))
        share_ids = np.arange(next_share, next_share + k, dtype=np.int64)
        next_share += k
        items = np.full(k, item, dtype=np.int64)
        reshare = rng.random(k) < 0.05
        reshare[0] = False
        items[reshare] = share_ids[0]
        tail = int(rng.integers(0, 10))  # a few organic shares later
        tail_ids = np.arange(next_share, next_share + tail, dtype=np.int64)
        next_share += tail
        writer.write(id=np.concatenate([share_ids, tail_ids]),
                     src=np.concatenate([sharers, users[rng.integers(0, n_users, tail)]]),
                     item=np.concatenate([items, np.full(tail, item)]),
                     ts=np.concatenate([ts, start + rng.integers(DAY_MS, 5 * DAY_MS, tail)]),
                     owner=np.full(k + tail, owner))
        return k + tail

    def burst_start() -> int:
        start = T0_MS + int(rng.integers(2 * DAY_MS, period - DAY_MS))
        if rng.random() < 1 / 3:  # straddle an hour boundary
            start = (start // HOUR_MS + 1) * HOUR_MS - 15 * MIN_MS
        return start

    # one owner per fast burst: an owner of two would link one burst to the other's reward post
    burst_owners = users[rng.choice(n_users, min(n_users, 2 * n_bursts), replace=False)]
    # planted induced bursts: half from a post whose own text induces sharing, half from a plain post right
    # after the owner's reward post (10 minutes to 20 hours before)
    for i in range(n_bursts):
        item, owner, start = item_base + i, int(burst_owners[i % len(burst_owners)]), burst_start()
        induced_text = i % 2 == 0
        post(np.array([item]), np.array([owner]), np.array([start - int(rng.integers(MIN_MS, 2 * HOUR_MS))]),
             induced_text)
        if not induced_text:
            post(np.array([trigger_base + i]), np.array([owner]),
                 np.array([start - int(rng.integers(10 * MIN_MS, 20 * HOUR_MS))]), True, bool(rng.random() < 0.5))
        written += burst(item, owner, start)
        truth.burst_items.add(str(item))
    # organic fast bursts (news, a joke): as fast and as direct, but nothing induced them. A third of their
    # owners posted a reward post too, but long before (2-6 days) or after the burst: not a trigger.
    for i in range(n_bursts):
        item, owner, start = item_base + n_bursts + i, int(burst_owners[(n_bursts + i) % len(burst_owners)]), \
            burst_start()
        post(np.array([item]), np.array([owner]), np.array([start - int(rng.integers(MIN_MS, 2 * HOUR_MS))]), False)
        if i % 3 == 0:
            late = rng.random() < 0.5
            at = start + int(rng.integers(HOUR_MS, DAY_MS)) if late else \
                start - int(rng.integers(2 * DAY_MS, 6 * DAY_MS))
            post(np.array([trigger_base + n_bursts + i]), np.array([owner]), np.array([at]), True, True)
        written += burst(item, owner, start)
    # organic cascades: Zipf item popularity, shares spread over hours to days, half of them reshares
    rest = max(0, n_shares - written)
    n_items = max(100, rest // 8)
    item_ids = item_base + 2 * n_bursts + np.arange(n_items, dtype=np.int64)
    owners = users[rng.integers(0, n_users, n_items)]
    born = T0_MS + rng.integers(0, period - DAY_MS, n_items)
    # every item is a post; one in a hundred has induced-sharing text that nobody took up (no burst)
    post(item_ids, owners, born - rng.integers(MIN_MS, HOUR_MS, n_items), False)
    quiet = np.flatnonzero((rng.random(n_items) < 0.01) & ~np.isin(owners, burst_owners))  # not a trigger
    post(item_ids[quiet] + 10**11, owners[quiet], born[quiet], True)
    spread = rng.lognormal(np.log(12 * HOUR_MS), 0.8, n_items)
    cdf = np.cumsum(_zipf(n_items, 1.0, 2.0))
    for n in _chunks(rest):
        which = np.sort(_pick(rng, cdf, n))  # grouped by item
        ts = born[which] + rng.exponential(spread[which]).astype(np.int64)
        order = np.lexsort((ts, which))
        which, ts = which[order], ts[order]
        sid = np.arange(next_share, next_share + n, dtype=np.int64)
        next_share += n
        # rank of each share within its item (chunk-local), to pick an earlier share as parent
        starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
        rank = np.arange(n) - group_start
        reshare = (rank > 0) & (rng.random(n) < 0.5)
        parent = group_start + (rng.random(n) * np.maximum(rank, 1)).astype(np.int64)
        item = np.where(reshare, sid[parent], item_ids[which])
        writer.write(id=sid, src=users[rng.integers(0, n_users, n)], item=item, ts=ts, owner=owners[which])
    writer.close()
    posts.close()
    truth.sizes["shares"] = writer.rows
    truth.sizes["posts"] = posts.rows


def _links(rng: np.random.Generator, ids: _Ids, out: Path, truth: Truth, users: np.ndarray, n_links: int,
           period: int) -> None:
    links = _Writer(out / "links.parquet", LINKS)
    accounts = _Writer(out / "accounts.parquet", ACCOUNTS)
    next_value = [1]

    def values(n: int) -> np.ndarray:
        out_ = np.arange(next_value[0], next_value[0] + n, dtype=np.int64)
        next_value[0] += n
        return out_

    def link(acc: np.ndarray, kind: str, val: np.ndarray) -> int:
        links.write(account=acc, kind=np.full(len(acc), kind, dtype=object), value=val)
        return len(acc)

    written = 0
    n_banned = max(50, n_links // 500)
    banned = ids.take(n_banned)
    reg = T0_MS + rng.integers(0, period // 2, n_banned)
    ban_at = reg + rng.integers(DAY_MS, 5 * DAY_MS, n_banned)
    written += link(banned, "device_id", values(n_banned)) + link(banned, "phone", values(n_banned))
    # the banned accounts' device and phone values are the first 2 * n_banned values handed out above
    dev = {int(a): i + 1 for i, a in enumerate(banned)}
    phone = {int(a): n_banned + i + 1 for i, a in enumerate(banned)}
    acc_rows = [(banned, reg, ban_at)]
    for j, b in enumerate(banned):
        b = int(b)
        if j % 2 == 0:  # an evasion chain of 1-4 new accounts
            prev_vals = {"device_id": dev[b], "phone": phone[b], "payment_id": None}
            at = int(ban_at[j])
            for _ in range(int(rng.integers(1, 5))):
                new = ids.take(1)
                at += int(rng.integers(HOUR_MS, 3 * DAY_MS))
                kind = str(rng.choice(["device_id", "phone"] if prev_vals["payment_id"] is None
                                      else ["device_id", "phone", "payment_id"]))
                written += link(new, kind, np.array([prev_vals[kind]], dtype=np.int64))
                own = {k: int(values(1)[0]) for k in ("device_id", "phone", "payment_id") if k != kind}
                for k, v in own.items():
                    written += link(new, k, np.array([v], dtype=np.int64))
                prev_vals = {kind: prev_vals[kind], **own}
                acc_rows.append((new, np.array([at]), np.array([-1])))
                truth.evaders.add(str(new[0]))
        elif j % 4 == 1:  # a relative registered before the ban shares the device: not evasion
            rel = ids.take(1)
            written += link(rel, "device_id", np.array([dev[b]], dtype=np.int64))
            acc_rows.append((rel, np.array([int(reg[j]) - DAY_MS]), np.array([-1])))
    # internet-cafe hubs: one device value shared by 100-300 accounts, one of them banned
    for h in range(max(2, n_links // 20_000)):
        k = int(rng.integers(100, 301))
        members = ids.take(k)  # registered before and after the ban: neither is evasion
        hub = values(1)[0]
        written += link(np.append(members, banned[(2 * h + 1) % n_banned]), "device_id", np.full(k + 1, hub))
        written += link(members, "phone", values(k))
        acc_rows.append((members, T0_MS + rng.integers(0, period, k), np.full(k, -1)))
    # ordinary people: own device and phone; households of 2-3 share a device
    rest = max(0, n_links - written)
    n_people = min(len(users), rest // 2)
    people = users[rng.choice(len(users), n_people, replace=False)]
    household = rng.random(n_people) < 0.05
    dev_vals = values(n_people)
    dev_vals[household] = dev_vals[np.maximum(np.flatnonzero(household) - 1, 0)]  # share with the one before
    link(people, "device_id", dev_vals)
    link(people, "phone", values(n_people))
    acc_rows.append((people, T0_MS + rng.integers(0, period, n_people), np.full(n_people, -1)))
    for acc, r, b in acc_rows:
        b = np.asarray(b, dtype=np.int64)
        accounts.write(account=acc.astype(np.int64), registered_ms=r.astype(np.int64),
                       banned_ms=pa.array(b, mask=b < 0))
    links.close()
    accounts.close()
    truth.sizes["links"] = links.rows


def _friend_requests(rng: np.random.Generator, ids: _Ids, out: Path, truth: Truth, users: np.ndarray, n_requests: int,
                     period: int) -> None:
    """Friendships among people in local circles, then who asks whom: sociable people, newcomers, spammers.

    - Background (the first 60% of the period): people ask others of their circle (nearby indices, so friends
      share friends), 85% accept; one request in ten goes to a random person, 30% accept.
    - Sociable people (later): 40-150 friends of friends in 1-2 days; most accept (80%), a quarter of them are
      less liked (15% accept) but still ask friends of friends. Not spam: they share friends with whom they ask.
    - Newcomers: 25-60 old acquaintances asked in a day, no mutual friend on the platform yet, 80% accept.
    - Planted spammers (fresh accounts): 80-400 random people in 1-4 days, 2-20% accept.
    """
    writer = _Writer(out / "friend_requests.parquet", FRIEND_REQUESTS)

    def write(src: np.ndarray, dst: np.ndarray, ts: np.ndarray, p_accept: np.ndarray | float) -> None:
        ok = rng.random(len(src)) < p_accept
        at = ts + rng.integers(MIN_MS, 2 * DAY_MS, len(src))
        writer.write(src=src, dst=dst, ts=ts, accepted=ok, accepted_ts=pa.array(at, mask=~ok))

    n_spam = max(10, n_requests // 4000)
    spam_sizes = rng.integers(80, 401, n_spam)
    n_social, n_new = 2 * n_spam, n_spam
    base = max(1000, n_requests - int(spam_sizes.sum()) - n_social * 95 - n_new * 42)
    n_people = min(len(users), max(200, base // 8))  # about 14 friends each
    people = users[:n_people]
    early = int(period * 0.6)
    # background circles
    u = rng.integers(0, n_people, base)
    local = rng.random(base) < 0.9
    v = np.where(local, (u + rng.integers(1, 41, base)) % n_people, rng.integers(0, n_people, base))
    keep = u != v
    u, v, local = u[keep], v[keep], local[keep]
    ts = T0_MS + rng.integers(0, early, len(u))
    ok = rng.random(len(u)) < np.where(local, 0.85, 0.3)
    at = ts + rng.integers(MIN_MS, 2 * DAY_MS, len(u))
    writer.write(src=people[u], dst=people[v], ts=ts, accepted=ok, accepted_ts=pa.array(at, mask=~ok))
    # friends (by index among people) for friends-of-friends, as sorted adjacency lists
    a = np.concatenate([u[ok], v[ok]])
    b = np.concatenate([v[ok], u[ok]])
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    lo = np.searchsorted(a, np.arange(n_people))
    hi = np.searchsorted(a, np.arange(n_people), side="right")
    later = T0_MS + early + 3 * DAY_MS
    span = period - early - 8 * DAY_MS
    # sociable people: friends of friends, over 1-3 days
    social = rng.choice(np.flatnonzero(hi - lo >= 5), min(n_social, int((hi - lo >= 5).sum())), replace=False)
    for n, h in enumerate(social):
        k = int(rng.integers(40, 151))
        friends = set(b[lo[h]:hi[h]].tolist())
        asked: set[int] = set()
        for _ in range(4 * k):
            f = int(rng.choice(b[lo[h]:hi[h]]))
            if hi[f] > lo[f]:
                t = int(b[lo[f] + int(rng.integers(0, hi[f] - lo[f]))])
                if t != h and t not in friends:
                    asked.add(t)
            if len(asked) >= k:
                break
        dst = np.array(sorted(asked), dtype=np.int64)
        start = later + int(rng.integers(0, span))
        write(np.full(len(dst), people[h]), people[dst], start + rng.integers(0, int(rng.integers(1, 3)) * DAY_MS,
                                                                              len(dst)), 0.15 if n % 4 == 0 else 0.8)
    # newcomers: old acquaintances, no mutual friend yet
    for _ in range(n_new):
        k = int(rng.integers(25, 61))
        start = later + int(rng.integers(0, span))
        write(np.full(k, ids.take(1)[0]), people[rng.choice(n_people, k, replace=False)],
              start + rng.integers(0, DAY_MS, k), 0.8)
    # planted spammers: strangers by the hundreds
    spammers = ids.take(n_spam)
    for s_, k in zip(spammers, spam_sizes, strict=True):
        k = int(min(k, len(users)))
        start = T0_MS + int(rng.integers(0, period - 5 * DAY_MS))
        write(np.full(k, s_), users[rng.choice(len(users), k, replace=False)],
              start + rng.integers(0, int(rng.integers(1, 5)) * DAY_MS, k), float(rng.uniform(0.02, 0.2)))
        truth.friend_spammers.add(str(s_))
    writer.close()
    truth.sizes["friend_requests"] = writer.rows
