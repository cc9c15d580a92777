/**
 * How many frames a new replica needs before it exits early as often as the
 * fleet does, in two runs on fresh topics and Redis keys:
 *
 * - join: two replicas warm the shared cache up on `warmUp` frames; then a
 *   third joins the group and `joined` more frames come. The fleet's rate is
 *   the early-exit share of the two warm replicas over those frames; the
 *   joiner's figures are over its own answers, in the order it wrote them.
 * - cold: one replica alone with an empty shared state (as the first replica
 *   of a fleet, or one without sharing) answers `warmUp + joined` frames.
 *
 * "Reaching the fleet's rate" is the first window of `window` consecutive
 * answers whose early-exit share is at least `reachShare` of the fleet's.
 */
import type { BenchContext } from "../kafka/arm.ts";
import { FleetRun } from "./fleet-run.ts";
import type { Answer } from "./replica-log.ts";
import { earlyShare, firstEarly, framesToReach } from "./replica-log.ts";

export interface JoinPlan {
  warmUp: number;
  joined: number;
  window: number;
  reachShare: number;
  seed: number;
  timeoutMs: number;
}

export interface NewReplicaFigures {
  /** Frames it answered. */
  frames: number;
  /** Heads version of its first answer (0: it started cold). */
  firstVersion: number;
  /** 1-based position of its first early answer. */
  firstEarly: number | null;
  /** Early-exit share of its first 500 answers. */
  first500Share: number;
  /** Frames until a window of its answers reached the target (see the module comment). */
  framesToReach: number | null;
}

export interface JoinFigures {
  /** Early-exit share of the warm replicas over the frames that came after the join. */
  fleetShare: number;
  /** reachShare x fleetShare. */
  target: number;
  joiner: NewReplicaFigures;
  cold: NewReplicaFigures;
  workersFailed: boolean;
}

function figures(answers: readonly Answer[], target: number, window: number): NewReplicaFigures {
  return {
    frames: answers.length,
    firstVersion: answers[0]?.headsVersion ?? 0,
    firstEarly: firstEarly(answers),
    first500Share: earlyShare(answers.slice(0, 500)),
    framesToReach: framesToReach(answers, target, window),
  };
}

export async function runJoin(ctx: BenchContext, plan: JoinPlan): Promise<JoinFigures> {
  let failed = false;
  const join = await FleetRun.open(ctx, "join");
  let fleetAnswers: Answer[];
  let joinerAnswers: Answer[];
  try {
    await join.start("fleet-1", "fleet-2");
    await join.produce("warm", plan.warmUp, plan.seed);
    await join.answered(plan.timeoutMs);
    ctx.say(`join: the fleet answered ${plan.warmUp} warm-up frames; a third replica joins`);
    await join.start("joiner");
    const joined = await join.produce("join", plan.joined, plan.seed + 1);
    await join.answered(plan.timeoutMs);
    failed = (await join.stop()) || failed;
    fleetAnswers = join.log.others("joiner", `${joined}-`);
    joinerAnswers = join.log.of("joiner");
  } finally {
    await join.close();
  }
  const fleetShare = earlyShare(fleetAnswers);
  const target = plan.reachShare * fleetShare;

  const cold = await FleetRun.open(ctx, "cold");
  let coldAnswers: Answer[];
  try {
    await cold.start("cold");
    await cold.produce("all", plan.warmUp + plan.joined, plan.seed);
    await cold.answered(plan.timeoutMs);
    failed = (await cold.stop()) || failed;
    coldAnswers = cold.log.of("cold");
  } finally {
    await cold.close();
  }
  return {
    fleetShare,
    target,
    joiner: figures(joinerAnswers, target, plan.window),
    cold: figures(coldAnswers, target, plan.window),
    workersFailed: failed,
  };
}
