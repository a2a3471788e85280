-- A user's published top 10, with titles and genres (psql: \set user_id 42).
SELECT rank, title, year, array_to_string(genres, ', ') AS genres, round(score::numeric, 3) AS score, source
FROM current_recommendations
WHERE user_id = :user_id AND rank <= 10
ORDER BY rank;
