-- Analyst views over the published lists (created by migration 0003; re-runnable).

-- The published lists: exactly one complete batch, swapped in one transaction.
CREATE OR REPLACE VIEW current_recommendations AS
SELECT r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.source,
       v.registered_version AS model_version, r.model_version_id, r.batch_id, b.data_cutoff, r.generated_at
FROM recommendation_batches b
JOIN batch_recommendations r ON r.batch_id = b.batch_id
JOIN movies m ON m.movie_id = r.movie_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
WHERE b.status = 'published';

-- One row per kept batch: who it covers, how much of the catalogue it recommends.
CREATE OR REPLACE VIEW recommendation_batch_summary AS
SELECT b.batch_id, b.status, v.registered_version AS model_version, b.model_version_id, b.data_cutoff,
       b.top_n, b.users, b.fallback_users, b.rows, s.distinct_movies,
       round(s.distinct_movies::numeric / NULLIF((SELECT count(*) FROM movies), 0), 4) AS catalogue_coverage,
       round(s.mean_score::numeric, 4) AS mean_score, b.generated_at, b.published_at
FROM recommendation_batches b
JOIN model_versions v ON v.model_version_id = b.model_version_id
LEFT JOIN LATERAL (SELECT count(DISTINCT movie_id) AS distinct_movies, avg(score) AS mean_score
                   FROM batch_recommendations r WHERE r.batch_id = b.batch_id) s ON true;

-- Overlap and churn between the two most recent batches, per user (top-10 and whole lists).
CREATE OR REPLACE VIEW recommendation_churn AS
WITH last_two AS (
    SELECT batch_id, row_number() OVER (ORDER BY batch_id DESC) AS age
    FROM recommendation_batches ORDER BY batch_id DESC LIMIT 2
), newer AS (
    SELECT r.* FROM batch_recommendations r JOIN last_two t ON t.batch_id = r.batch_id AND t.age = 1
), older AS (
    SELECT r.* FROM batch_recommendations r JOIN last_two t ON t.batch_id = r.batch_id AND t.age = 2
)
SELECT n.user_id,
       (SELECT batch_id FROM last_two WHERE age = 1) AS batch_id,
       (SELECT batch_id FROM last_two WHERE age = 2) AS previous_batch_id,
       count(*) FILTER (WHERE n.rank <= 10 AND o.rank <= 10) AS overlap_top10,
       count(o.movie_id) AS overlap_all,
       count(*) AS list_length,
       round(1 - count(o.movie_id)::numeric / count(*), 4) AS churn
FROM newer n
LEFT JOIN older o ON o.user_id = n.user_id AND o.movie_id = n.movie_id
GROUP BY n.user_id;

-- What the published lists recommend, against how often each movie is rated: popularity bias at a glance.
CREATE OR REPLACE VIEW recommendation_popularity AS
SELECT c.movie_id, c.title, count(*) AS times_recommended,
       count(*) FILTER (WHERE c.rank <= 10) AS times_in_top10,
       round(avg(c.rank)::numeric, 2) AS mean_rank,
       (SELECT count(*) FROM ratings r WHERE r.movie_id = c.movie_id) AS ratings
FROM current_recommendations c
GROUP BY c.movie_id, c.title;
