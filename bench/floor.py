"""The SQL floor: one hand-written statement building the D1 dashboard JSON through the app's driver
(PostgreSQL json_agg, SQLite json_group_array), and PostgreSQL COPY of the progress export."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.scenarios import percentile

PERMISSIONS = '["VIEW_PROGRESS", "REVIEW_WORK", "MANAGE_GROUP", "EXPORT_GROUP"]'

D1_POSTGRES = """
WITH sub AS (SELECT descendant_id AS id FROM group_closure WHERE ancestor_id = :g),
mem AS (SELECT m.id, m.user_id, m.group_id, m.role FROM membership m JOIN sub ON sub.id = m.group_id),
learners AS (SELECT DISTINCT user_id FROM mem WHERE role = 'MEMBER'),
sc AS (SELECT course_id, count(*) AS n FROM step GROUP BY course_id),
done AS (SELECT sp.user_id, sp.course_id, count(sp.completed_at) AS done
         FROM step_progress sp JOIN learners l ON l.user_id = sp.user_id GROUP BY 1, 2),
summary AS (SELECT e.course_id, count(*) AS enrolled, count(e.completed_at) AS completed,
                   avg(100.0 * coalesce(d.done, 0) / sc.n) AS average
            FROM enrollment e JOIN learners l ON l.user_id = e.user_id JOIN sc ON sc.course_id = e.course_id
            LEFT JOIN done d ON d.user_id = e.user_id AND d.course_id = e.course_id GROUP BY e.course_id),
page AS (SELECT mem.*, row_number() OVER (ORDER BY u.last_name_normalized, mem.id) AS pos
         FROM mem JOIN "user" u ON u.id = mem.user_id WHERE mem.role = 'MEMBER'
         ORDER BY u.last_name_normalized, mem.id LIMIT 101),
prog AS (SELECT sp.user_id, sp.course_id, count(sp.viewed_at) AS viewed, count(sp.completed_at) AS done,
                sum(sp.points) AS points, sum(s.max_points) FILTER (WHERE sp.points IS NOT NULL) AS max_points
         FROM step_progress sp JOIN step s ON s.id = sp.step_id
         WHERE sp.user_id IN (SELECT user_id FROM page) GROUP BY 1, 2),
cp AS (SELECT e.user_id, json_agg(json_build_object(
           'course', json_build_object('name', c.name), 'activatedAt', e.activated_at, 'expiresAt', e.expires_at,
           'completedAt', e.completed_at, 'percentViewed', 100.0 * coalesce(p.viewed, 0) / sc.n,
           'percentCompleted', 100.0 * coalesce(p.done, 0) / sc.n,
           'gradePercent', 100.0 * p.points / nullif(p.max_points, 0), 'stepsCompleted', coalesce(p.done, 0),
           'stepCount', sc.n) ORDER BY c.name) AS courses
       FROM enrollment e JOIN course c ON c.id = e.course_id JOIN sc ON sc.course_id = e.course_id
       LEFT JOIN prog p ON p.user_id = e.user_id AND p.course_id = e.course_id
       WHERE e.user_id IN (SELECT user_id FROM page) GROUP BY e.user_id)
SELECT json_build_object('data', json_build_object('group', json_build_object(
  'name', g.name, 'depth', g.depth,
  'ancestors', (SELECT coalesce(json_agg(json_build_object('name', a.name) ORDER BY c.depth DESC), '[]')
                FROM group_closure c JOIN "group" a ON a.id = c.ancestor_id WHERE c.descendant_id = g.id AND c.depth > 0),
  'children', (SELECT coalesce(json_agg(json_build_object('name', ch.name, 'memberCount',
                 (SELECT count(*) FROM group_closure c JOIN membership m ON m.group_id = c.descendant_id
                  WHERE c.ancestor_id = ch.id)) ORDER BY ch.name), '[]')
               FROM "group" ch WHERE ch.parent_id = g.id),
  'viewerRole', NULL, 'viewerPermissions', '""" + PERMISSIONS + """'::json,
  'memberCount', (SELECT count(*) FROM mem),
  'progressSummary', json_build_object('learnerCount', (SELECT count(*) FROM learners),
     'courses', (SELECT coalesce(json_agg(json_build_object('course', json_build_object('name', c.name),
                   'enrolledCount', s.enrolled, 'completedCount', s.completed, 'averagePercentCompleted', s.average)
                   ORDER BY c.name), '[]') FROM summary s JOIN course c ON c.id = s.course_id)),
  'members', json_build_object(
     'totalCount', (SELECT count(*) FROM mem WHERE role = 'MEMBER'),
     'pageInfo', json_build_object('hasNextPage', (SELECT count(*) > 100 FROM page),
                                   'endCursor', (SELECT id::text FROM page WHERE pos = LEAST(100, (SELECT count(*) FROM page)))),
     'edges', (SELECT coalesce(json_agg(json_build_object('node', json_build_object(
                 'role', p.role, 'group', json_build_object('name', pg.name),
                 'user', json_build_object('firstName', u.first_name, 'lastName', u.last_name, 'email', u.email,
                                           'courseProgress', coalesce(cp.courses, '[]')))) ORDER BY p.pos), '[]')
               FROM (SELECT * FROM page WHERE pos <= 100) p JOIN "user" u ON u.id = p.user_id
               JOIN "group" pg ON pg.id = p.group_id LEFT JOIN cp ON cp.user_id = p.user_id))
)))::text
FROM "group" g WHERE g.id = :g
"""

D1_SQLITE = """
WITH sub AS (SELECT descendant_id AS id FROM group_closure WHERE ancestor_id = :g),
mem AS MATERIALIZED (SELECT m.id, m.user_id, m.group_id, m.role FROM membership m JOIN sub ON sub.id = m.group_id),
learners AS MATERIALIZED (SELECT DISTINCT user_id FROM mem WHERE role = 'MEMBER'),
sc AS MATERIALIZED (SELECT course_id, count(*) AS n FROM step GROUP BY course_id),
summary AS (SELECT e.course_id, count(*) AS enrolled, count(e.completed_at) AS completed,
                   avg(100.0 * (SELECT count(sp.completed_at) FROM step_progress sp
                                WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id)
                       / (SELECT n FROM sc WHERE sc.course_id = e.course_id)) AS average
            FROM enrollment e WHERE e.user_id IN (SELECT user_id FROM learners) GROUP BY e.course_id),
page AS MATERIALIZED (SELECT mem.*, row_number() OVER (ORDER BY u.last_name_normalized, mem.id) AS pos
         FROM mem JOIN "user" u ON u.id = mem.user_id WHERE mem.role = 'MEMBER'
         ORDER BY u.last_name_normalized, mem.id LIMIT 101),
cp AS (SELECT user_id, json_group_array(json(card)) AS courses FROM (
         SELECT e.user_id, json_object(
           'course', json_object('name', c.name), 'activatedAt', e.activated_at, 'expiresAt', e.expires_at,
           'completedAt', e.completed_at,
           'percentViewed', 100.0 * (SELECT count(sp.viewed_at) FROM step_progress sp
                                     WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id) / sc.n,
           'percentCompleted', 100.0 * (SELECT count(sp.completed_at) FROM step_progress sp
                                        WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id) / sc.n,
           'gradePercent', (SELECT 100.0 * sum(sp.points) / nullif(sum(s.max_points), 0) FROM step_progress sp
                            JOIN step s ON s.id = sp.step_id
                            WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id AND sp.points IS NOT NULL),
           'stepsCompleted', (SELECT count(sp.completed_at) FROM step_progress sp
                              WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id),
           'stepCount', sc.n) AS card
         FROM enrollment e JOIN course c ON c.id = e.course_id JOIN sc ON sc.course_id = e.course_id
         WHERE e.user_id IN (SELECT user_id FROM page) ORDER BY e.user_id, c.name)
       GROUP BY user_id)
SELECT json_object('data', json_object('group', json_object(
  'name', g.name, 'depth', g.depth,
  'ancestors', (SELECT json_group_array(json_object('name', name)) FROM (
                  SELECT a.name FROM group_closure c JOIN "group" a ON a.id = c.ancestor_id
                  WHERE c.descendant_id = g.id AND c.depth > 0 ORDER BY c.depth DESC)),
  'children', (SELECT json_group_array(json_object('name', name, 'memberCount', n)) FROM (
                 SELECT ch.name, (SELECT count(*) FROM group_closure c JOIN membership m ON m.group_id = c.descendant_id
                                  WHERE c.ancestor_id = ch.id) AS n
                 FROM "group" ch WHERE ch.parent_id = g.id ORDER BY ch.name)),
  'viewerRole', NULL, 'viewerPermissions', json('""" + PERMISSIONS + """'),
  'memberCount', (SELECT count(*) FROM mem),
  'progressSummary', json_object('learnerCount', (SELECT count(*) FROM learners),
     'courses', (SELECT json_group_array(json_object('course', json_object('name', name), 'enrolledCount', enrolled,
                   'completedCount', completed, 'averagePercentCompleted', average)) FROM (
                   SELECT c.name, s.* FROM summary s JOIN course c ON c.id = s.course_id ORDER BY c.name))),
  'members', json_object(
     'totalCount', (SELECT count(*) FROM mem WHERE role = 'MEMBER'),
     'pageInfo', json_object('hasNextPage', json((SELECT CASE WHEN count(*) > 100 THEN 'true' ELSE 'false' END FROM page)),
                             'endCursor', (SELECT CAST(id AS TEXT) FROM page WHERE pos = min(100, (SELECT count(*) FROM page)))),
     'edges', (SELECT json_group_array(json(edge)) FROM (
                 SELECT json_object('node', json_object('role', p.role, 'group', json_object('name', pg.name),
                   'user', json_object('firstName', u.first_name, 'lastName', u.last_name, 'email', u.email,
                                       'courseProgress', json(coalesce(cp.courses, '[]'))))) AS edge
                 FROM (SELECT * FROM page WHERE pos <= 100) p JOIN "user" u ON u.id = p.user_id
                 JOIN "group" pg ON pg.id = p.group_id LEFT JOIN cp ON cp.user_id = p.user_id ORDER BY p.pos)))
)))
FROM "group" g WHERE g.id = :g
"""

EXPORT_ROWS = """
SELECT u.first_name, u.last_name, u.email, u.company, g.name, c.name, e.activated_at,
       round(100.0 * (SELECT count(sp.completed_at) FROM step_progress sp
                      WHERE sp.user_id = e.user_id AND sp.course_id = e.course_id) / sc.n, 1),
       e.completed_at, e.expires_at
FROM group_closure gc
JOIN membership m ON m.group_id = gc.descendant_id AND m.role = 'MEMBER'
JOIN "user" u ON u.id = m.user_id JOIN "group" g ON g.id = m.group_id
JOIN enrollment e ON e.user_id = m.user_id JOIN course c ON c.id = e.course_id
JOIN (SELECT course_id, count(*) AS n FROM step GROUP BY course_id) sc ON sc.course_id = e.course_id
WHERE gc.ancestor_id = {group}
ORDER BY m.id, e.id
"""


async def time_d1_floor(url: str, group_id: int, repeat: int) -> dict[str, Any]:
    """p50 of the one-statement dashboard through the app's driver, and the size of its JSON."""
    engine = create_async_engine(url)
    sql = text(D1_SQLITE if url.startswith("sqlite") else D1_POSTGRES)
    times: list[float] = []
    size = 0
    try:
        async with engine.connect() as conn:
            for n in range(repeat + 2):
                started = time.perf_counter()
                value = (await conn.execute(sql, {"g": group_id})).scalar_one()
                if n >= 2:
                    times.append((time.perf_counter() - started) * 1000)
                size = len(value.encode())
    finally:
        await engine.dispose()
    times.sort()
    return {"p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2), "bytes": size}


async def time_copy(dsn: str, group_id: int) -> dict[str, Any]:
    """PostgreSQL `COPY (export query) TO STDOUT WITH CSV`: rows/s and time to the first byte."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    state = {"bytes": 0, "rows": 0, "first": None}
    started = time.perf_counter()

    async def sink(chunk: bytes) -> None:
        if state["first"] is None:
            state["first"] = time.perf_counter() - started
        state["bytes"] += len(chunk)
        state["rows"] += chunk.count(b"\n")

    try:
        await conn.copy_from_query(EXPORT_ROWS.format(group=int(group_id)), output=sink, format="csv")
    finally:
        await conn.close()
    seconds = time.perf_counter() - started
    return {"rows": state["rows"], "seconds": round(seconds, 3), "rows_per_s": round(state["rows"] / seconds),
            "ttfb_ms": round((state["first"] or 0) * 1000, 1)}
