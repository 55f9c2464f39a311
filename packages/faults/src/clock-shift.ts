/**
 * A preload module (`node --import`) that shifts this process's wall clock
 * by DMR_FAULTS_CLOCK_OFFSET_MS: `Date.now()` and `new Date()` (no
 * arguments) read the real time plus the offset. The clock-skew scenario
 * starts a node agent with it in NODE_OPTIONS; its routers inherit it.
 *
 * What it covers: everything DMR's JavaScript decides by the wall clock —
 * message timestamps and their skew check, hop times, TTLs the router
 * computes, certificate validity as @peculiar/x509 and the JWS checks see
 * it, configuration `issuedAt`, renewal schedules. What it does not: TLS
 * handshakes (OpenSSL reads the system clock itself), timers and
 * `performance.now()` (monotonic, unshifted), and the broker's own clock.
 */
const offset = Number(process.env.DMR_FAULTS_CLOCK_OFFSET_MS ?? '0');

if (Number.isFinite(offset) && offset !== 0) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class ShiftedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(realNow() + offset);
      else super(...(args as [string | number]));
    }

    static override now(): number {
      return realNow() + offset;
    }
  }
  globalThis.Date = ShiftedDate as DateConstructor;
}

export {};
