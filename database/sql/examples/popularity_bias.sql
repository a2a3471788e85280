-- Most recommended movies against their rating counts, and the share of lists that are fallback lists.
SELECT title, times_recommended, times_in_top10, mean_rank, ratings
FROM recommendation_popularity
ORDER BY times_in_top10 DESC, times_recommended DESC
LIMIT 20;

SELECT source, count(DISTINCT user_id) AS users FROM current_recommendations GROUP BY source;
