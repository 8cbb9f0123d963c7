"""One contract, two document stores: in memory and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from collab.merge import build_from_text, merge_document, new_doc
from collab.store import DocumentStore, FileGone, LiveCompaction, MemoryStore
from persistence.db import Database
from persistence.documents import PostgresDocumentStore
from tests.support import factories


@dataclass
class StoreUnderTest:
    store: DocumentStore
    new_file: Callable[[str], Awaitable[uuid.UUID]]
    user_id: str
    workspace_id: uuid.UUID
    updated_by: Callable[[uuid.UUID], Awaitable[str | None]]


@pytest.fixture
async def postgres_sut(db: Database) -> StoreUnderTest:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        workspace_id = await factories.create_workspace(conn, owner)
        project = await factories.create_project(conn, workspace_id)

    async def new_pg_file(content: str) -> uuid.UUID:
        async with db.service() as conn:
            return await factories.create_file(conn, project, f"f-{uuid.uuid4().hex}.txt",
                                               content)

    async def pg_updated_by(file_id: uuid.UUID) -> str | None:
        async with db.acquire() as conn:
            value = await conn.fetchval(
                "select updated_by from public.files where id = $1", file_id
            )
        return str(value) if value is not None else None

    return StoreUnderTest(
        PostgresDocumentStore(db), new_pg_file, str(owner), workspace_id, pg_updated_by
    )


@pytest.fixture(params=["memory", "postgres"])
def sut(request: pytest.FixtureRequest) -> StoreUnderTest:
    if request.param == "postgres":
        found: StoreUnderTest = request.getfixturevalue("postgres_sut")
        return found
    mem = MemoryStore()
    user, workspace = str(uuid.uuid4()), uuid.uuid4()
    mem.roles[(user, workspace)] = "member"

    async def new_mem_file(content: str) -> uuid.UUID:
        file_id = uuid.uuid4()
        mem.add_file(file_id, content)
        return file_id

    async def mem_updated_by(file_id: uuid.UUID) -> str | None:
        return mem.files[file_id].updated_by

    return StoreUnderTest(mem, new_mem_file, user, workspace, mem_updated_by)


def text_of(state: bytes | None, updates: list[bytes]) -> str:
    doc, text = new_doc()
    if state:
        doc.apply_update(state)
    for u in updates:
        doc.apply_update(u)
    return str(text)


def edit(base: bytes | None, insert: str) -> bytes:
    doc, text = new_doc()
    if base:
        doc.apply_update(base)
    before = doc.get_state()
    text.insert(0, insert)
    return doc.get_update(before)


async def test_load_missing_file(sut: StoreUnderTest) -> None:
    with pytest.raises(FileGone):
        await sut.store.load(uuid.uuid4())


async def test_initialize_once_even_when_racing(sut: StoreUnderTest) -> None:
    file_id = await sut.new_file("from text")
    stored = await sut.store.load(file_id)
    assert (stored.state, stored.updates, stored.content) == (None, [], "from text")
    builds: list[str] = []

    def build(content: str) -> tuple[bytes, bytes]:
        builds.append(content)
        return build_from_text(content)

    results = await asyncio.gather(*(sut.store.initialize(file_id, build) for _ in range(4)))
    assert builds == ["from text"]
    assert len({r.state for r in results}) == 1
    assert text_of(results[0].state, []) == "from text"


async def test_log_and_compaction(sut: StoreUnderTest) -> None:
    file_id = await sut.new_file("")
    first = await sut.store.initialize(file_id, build_from_text)
    u1 = edit(first.state, "b")
    u2 = edit(merge_bytes(first.state, u1), "a")
    await sut.store.append_updates([(file_id, u1), (uuid.uuid4(), b"\x00\x00"), (file_id, u2)])
    stored = await sut.store.load(file_id)
    assert stored.updates == [u1, u2]
    assert text_of(stored.state, stored.updates) == "ab"
    result = await sut.store.compact(
        file_id, lambda s, us: merge_document(s, us, None), editor=sut.user_id
    )
    assert result is not None
    assert (result.merged_rows, result.text) == (2, "ab")
    after = await sut.store.load(file_id)
    assert after.updates == []
    assert after.content == "ab"
    assert text_of(after.state, []) == "ab"
    assert await sut.updated_by(file_id) == sut.user_id
    # Nothing new: the row is not touched, whoever compacts.
    again = await sut.store.compact(
        file_id, lambda s, us: merge_document(s, us, None), editor=str(uuid.uuid4())
    )
    assert again is not None and again.merged_rows == 0
    assert await sut.updated_by(file_id) == sut.user_id


async def test_appended_rows_are_identified_and_generations_count_writes(
    sut: StoreUnderTest,
) -> None:
    file_id, other_id = await sut.new_file(""), await sut.new_file("")
    first = await sut.store.initialize(file_id, build_from_text)
    assert first.generation == 0
    u1 = edit(first.state, "b")
    u2 = edit(merge_bytes(first.state, u1), "a")
    other = edit(None, "o")
    # Two files interleaved, a file that does not exist between them: each row's id
    # (or None) at its own position, ascending in the order given.
    ids = await sut.store.append_updates(
        [(other_id, other), (file_id, u1), (uuid.uuid4(), b"\x00\x00"), (file_id, u2),
         (other_id, other)]
    )
    assert ids[2] is None
    known = [i for i in ids if i is not None]
    assert len(known) == 4 and known == sorted(known)
    id1, id2 = ids[1], ids[3]
    stored = await sut.store.load(file_id)
    assert stored.update_ids == (id1, id2)
    assert (await sut.store.load(other_id)).update_ids == (ids[0], ids[4])
    result = await sut.store.compact(file_id, lambda s, us: merge_document(s, us, None))
    assert result is not None
    assert result.merged_ids == stored.update_ids
    assert result.generation == 1
    assert (await sut.store.load(file_id)).generation == 1


async def test_compact_live_writes_what_the_caller_merged(sut: StoreUnderTest) -> None:
    file_id = await sut.new_file("")
    first = await sut.store.initialize(file_id, build_from_text)
    u1 = edit(first.state, "b")
    u2 = edit(merge_bytes(first.state, u1), "a")
    id1, id2 = await sut.store.append_updates([(file_id, u1), (file_id, u2)])
    assert id1 is not None and id2 is not None
    # The caller merged state 0 and the first row only; the second was appended meanwhile.
    merged = merge_document(first.state, [u1], None)
    result = await sut.store.compact_live(
        file_id, merged, generation=0, own_ids=[id1, id2], delete_ids=[id1],
        editor=sut.user_id,
    )
    assert result is not None
    assert (result.merged_ids, result.generation, result.text) == ((id1,), 1, "b")
    assert result.state == merged.state
    after = await sut.store.load(file_id)
    assert (after.state, after.update_ids, after.content) == (merged.state, (id2,), "b")
    assert text_of(after.state, after.updates) == "ab"
    assert await sut.updated_by(file_id) == sut.user_id


@pytest.mark.parametrize("why", ["stale-generation", "foreign-row"])
async def test_compact_live_writes_nothing_unless_it_holds_everything(
    sut: StoreUnderTest, why: str
) -> None:
    file_id = await sut.new_file("")
    first = await sut.store.initialize(file_id, build_from_text)
    u1 = edit(first.state, "b")
    [id1] = await sut.store.append_updates([(file_id, u1)])
    assert id1 is not None
    generation = 0
    if why == "stale-generation":
        # Another process compacted in between: the state the caller merged is gone.
        await sut.store.compact(file_id, lambda s, us: merge_document(s, us, None))
        generation_now = (await sut.store.load(file_id)).generation
        assert generation_now == 1
    else:
        # Another process appended a row the caller does not hold.
        await sut.store.append_updates([(file_id, edit(merge_bytes(first.state, u1), "z"))])
    before = await sut.store.load(file_id)
    merged = merge_document(first.state, [u1], None)
    result = await sut.store.compact_live(
        file_id, merged, generation=generation, own_ids=[id1], delete_ids=[id1]
    )
    assert result is None
    assert await sut.store.load(file_id) == before


async def test_compaction_failure_writes_nothing(sut: StoreUnderTest) -> None:
    file_id = await sut.new_file("")
    first = await sut.store.initialize(file_id, build_from_text)
    await sut.store.append_updates([(file_id, edit(first.state, "x"))])

    def broken(state: bytes | None, updates: list[bytes]) -> object:
        raise RuntimeError("merge failed")

    with pytest.raises(RuntimeError):
        await sut.store.compact(file_id, broken)  # type: ignore[arg-type]
    stored = await sut.store.load(file_id)
    assert len(stored.updates) == 1
    assert stored.content == ""


async def test_versions(sut: StoreUnderTest) -> None:
    file_id = await sut.new_file("")
    row = await sut.store.save_version(file_id, "one", sut.user_id, "msg")
    assert row is not None
    assert (row["version_number"], row["content"], row["change_message"]) == (1, "one", "msg")
    assert row["changed_by"] == uuid.UUID(sut.user_id)
    await sut.store.initialize(file_id, build_from_text)
    assert await sut.store.save_version(file_id, "one", sut.user_id, None, auto_bucket_s=60) is None
    auto = await sut.store.save_version(file_id, "two", sut.user_id, None, auto_bucket_s=60)
    assert auto is not None and auto["version_number"] == 2
    assert await sut.store.save_version(file_id, "three", sut.user_id, None,
                                        auto_bucket_s=60) is None
    explicit = await sut.store.save_version(file_id, "three", None, None)
    assert explicit is not None and explicit["version_number"] == 3


async def test_member_roles(sut: StoreUnderTest) -> None:
    stranger = (str(uuid.uuid4()), sut.workspace_id)
    roles = await sut.store.member_roles([(sut.user_id, sut.workspace_id), stranger])
    assert roles[(sut.user_id, sut.workspace_id)] in {"owner", "member"}
    assert roles.get(stranger) is None


def merge_bytes(state: bytes | None, update: bytes) -> bytes:
    doc, _ = new_doc()
    if state:
        doc.apply_update(state)
    doc.apply_update(update)
    return doc.get_update()


async def test_compact_live_many_writes_each_file_it_holds_in_order(
    sut: StoreUnderTest,
) -> None:
    """A shutdown's batch: every file written, except one another process compacted."""
    items: list[LiveCompaction] = []
    texts = []
    for n in range(3):
        file_id = await sut.new_file("")
        first = await sut.store.initialize(file_id, build_from_text)
        u = edit(first.state, f"doc {n}")
        [row_id] = await sut.store.append_updates([(file_id, u)])
        assert row_id is not None
        merged = merge_document(first.state, [u], None)
        items.append(LiveCompaction(file_id, merged, 0, [row_id], [row_id], sut.user_id))
        texts.append(f"doc {n}")
    # The middle file was compacted elsewhere: its generation moved on.
    await sut.store.compact(items[1].file_id, lambda s, us: merge_document(s, us, None))
    results = await sut.store.compact_live_many(items)
    assert [r.text if r else None for r in results] == ["doc 0", None, "doc 2"]
    for item, result, text in zip(items, results, texts, strict=True):
        after = await sut.store.load(item.file_id)
        assert (after.content, after.update_ids) == (text, ())
        if result is not None:
            assert (result.generation, result.merged_ids) == (1, tuple(item.delete_ids))
            assert after.state == item.snapshot.state
    assert await sut.store.compact_live_many([]) == []


async def test_compact_live_inserts_the_first_state_of_a_file_with_none(
    sut: StoreUnderTest,
) -> None:
    """A new, empty file first edited since its load: nothing stored (generation None), so
    the caller's merge of its own rows is inserted as the first state."""
    file_id = await sut.new_file("")
    loaded = await sut.store.load(file_id)
    assert loaded.state is None and loaded.updates == []
    u1 = edit(None, "b")
    u2 = edit(merge_bytes(None, u1), "a")
    id1, id2 = await sut.store.append_updates([(file_id, u1), (file_id, u2)])
    assert id1 is not None and id2 is not None
    merged = merge_document(None, [u1], None)
    result = await sut.store.compact_live(
        file_id, merged, generation=None, own_ids=[id1, id2], delete_ids=[id1],
        editor=sut.user_id,
    )
    assert result is not None
    assert (result.merged_ids, result.generation, result.text) == ((id1,), 1, "b")
    after = await sut.store.load(file_id)
    assert (after.state, after.update_ids, after.content) == (merged.state, (id2,), "b")
    assert after.generation == 1
    assert text_of(after.state, after.updates) == "ab"
    assert await sut.updated_by(file_id) == sut.user_id


@pytest.mark.parametrize("why", ["state-written-meanwhile", "foreign-row"])
async def test_compact_live_inserts_no_first_state_unless_it_holds_everything(
    sut: StoreUnderTest, why: str
) -> None:
    file_id = await sut.new_file("")
    u1 = edit(None, "b")
    [id1] = await sut.store.append_updates([(file_id, u1)])
    assert id1 is not None
    if why == "state-written-meanwhile":
        # Another process compacted first: there is a state now, which the caller never saw.
        await sut.store.compact(file_id, lambda s, us: merge_document(s, us, None))
    else:
        await sut.store.append_updates([(file_id, edit(merge_bytes(None, u1), "z"))])
    before = await sut.store.load(file_id)
    result = await sut.store.compact_live(
        file_id, merge_document(None, [u1], None), generation=None, own_ids=[id1],
        delete_ids=[id1],
    )
    assert result is None
    assert await sut.store.load(file_id) == before


async def test_compact_live_many_mixes_first_states_and_later_ones(sut: StoreUnderTest) -> None:
    """A shutdown's batch holds new files (nothing stored) next to stored ones."""
    fresh = await sut.new_file("")
    u = edit(None, "new")
    [fresh_row] = await sut.store.append_updates([(fresh, u)])
    stored = await sut.new_file("")
    first = await sut.store.initialize(stored, build_from_text)
    v = edit(first.state, "old")
    [stored_row] = await sut.store.append_updates([(stored, v)])
    assert fresh_row is not None and stored_row is not None
    items = sorted([
        LiveCompaction(fresh, merge_document(None, [u], None), None, [fresh_row], [fresh_row]),
        LiveCompaction(stored, merge_document(first.state, [v], None), 0, [stored_row],
                       [stored_row]),
    ], key=lambda item: item.file_id)
    results = await sut.store.compact_live_many(items)
    assert all(r is not None and r.generation == 1 for r in results)
    assert {(await sut.store.load(i.file_id)).content for i in items} == {"new", "old"}
