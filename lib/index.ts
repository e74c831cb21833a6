// Public exports of sdnode (the only list of them).
export {};
