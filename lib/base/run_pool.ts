/**
 * Running a list of async jobs a few at a time: `limit` workers take the next
 * job as they finish one. The first failure stops the workers from taking
 * more, and is rethrown once every job under way has settled, so nothing is
 * left running behind the caller's back.
 */

/** Runs async jobs, at most `limit` at a time; the first failure is rethrown after all settle. */
export async function runPool(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      try {
        await job();
      } catch (error) {
        errors.push(error);
        next = jobs.length;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  if (errors.length > 0) throw errors[0];
}
