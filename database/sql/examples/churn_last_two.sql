-- How much the lists moved between the last two batches.
SELECT count(*) AS users, round(avg(overlap_top10), 2) AS mean_top10_overlap,
       round(avg(churn), 4) AS mean_churn,
       count(*) FILTER (WHERE overlap_top10 = 0) AS users_with_new_top10
FROM recommendation_churn;
