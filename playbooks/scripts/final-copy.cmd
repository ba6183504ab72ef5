@echo off
rem ===========================================================================
rem The final night's copy: closes old-sbs's data shares, so that nobody
rem changes a file any more (open files are closed, connected users are
rem disconnected; the administrative share, e.g. D$, stays for the copy), then
rem copies what changed since the first passes with copy-share.cmd.
rem One step for both, so that the shares never stay closed through a
rem working day: the window lets the step start only if the copy fits.
rem Exit code: the combined robocopy code (0-7 success), 16 if a share could
rem not be closed or its definition not saved.
rem Runs in the Runner-Migration task: it manages old-sbs remotely (WMI, remote
rem registry). The shares and old-sbs's name come from C:\mig\bin\customer.cmd
rem (the step customer-settings).
rem
rem Before a share is deleted, its two registry values on old-sbs (the
rem definition under LanmanServer\Shares and its permissions under
rem LanmanServer\Shares\Security, KB 125996) are saved to
rem C:\mig\backup\old-shares on new-sbs, once: a second run never overwrites
rem the saved originals.
rem "undo" (the step's rollback) writes exactly those values back into
rem old-sbs's registry and restarts old-sbs, because the Server service reads
rem share definitions and their permissions only when it starts (KB 125996).
rem It then waits until the shares are back. It never deletes data.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set SHARES=%MIG_SHARES%
set OLD=%MIG_OLD%
set KEY=HKLM\SYSTEM\CurrentControlSet\Services\LanmanServer\Shares
set SAVE=C:\mig\backup\old-shares
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd final-copy "%~f0" in-task
exit /b %errorlevel%

:work
if not exist "%SAVE%" mkdir "%SAVE%"
set SAVED=1
for %%S in (%SHARES%) do call :save_one %%S || set SAVED=0
if not "%SAVED%"=="1" (
    echo The share definitions of old-sbs could not be saved: nothing was closed. 1>&2
    exit /b 16
)
for %%S in (%SHARES%) do wmic /node:%OLD% share where "name='%%S'" call delete
set OPEN=0
for %%S in (%SHARES%) do (
    net view \\%OLD% | findstr /b /i /c:"%%S " >nul
    if not errorlevel 1 (
        echo Share %%S is still open on old-sbs. 1>&2
        set OPEN=1
    )
)
if not "%OPEN%"=="0" exit /b 16
echo %date% %time% old-sbs's data shares are closed: final copy
call C:\mig\bin\copy-share.cmd %SHARES%
exit /b %errorlevel%

rem Saves NAME.def (REG_MULTI_SZ data) and NAME.sd (REG_BINARY data) once.
rem Both fit on one line: set /p reads them back (up to 1023 characters;
rem a share's definition and its security descriptor in hex are far less).
:save_one
if exist "%SAVE%\%~1.def" (
    echo %~1: definition already saved in %SAVE%.
    exit /b 0
)
set "DATA="
set "SD="
for /f "tokens=2*" %%a in ('reg query "\\%OLD%\%KEY%" /v %~1 ^| findstr /i "REG_MULTI_SZ"') do set "DATA=%%b"
for /f "tokens=2*" %%a in ('reg query "\\%OLD%\%KEY%\Security" /v %~1 ^| findstr /i "REG_BINARY"') do set "SD=%%b"
if not defined DATA (
    echo %~1: no share definition on old-sbs. 1>&2
    exit /b 1
)
setlocal EnableDelayedExpansion
> "%SAVE%\%~1.sd.tmp" echo(!SD!
> "%SAVE%\%~1.def.tmp" echo(!DATA!
endlocal
rem The definition file is written last: it marks the share as saved.
move /y "%SAVE%\%~1.sd.tmp" "%SAVE%\%~1.sd" >nul
move /y "%SAVE%\%~1.def.tmp" "%SAVE%\%~1.def" >nul
echo %~1: definition and permissions saved in %SAVE%.
exit /b 0

:undo
set MISSING=0
for %%S in (%SHARES%) do call :restore_one %%S || set MISSING=1
if not "%MISSING%"=="0" exit /b 1
echo Restarting old-sbs so that its Server service loads the restored shares.
shutdown /r /m \\%OLD% /t 60 /c "Migration rollback: restore the data shares"
if errorlevel 1 exit /b 1
rem Wait up to 30 minutes (60 x 30 s) for every share to be back.
for /l %%N in (1,1,60) do (
    ping -n 31 127.0.0.1 >nul
    call :all_shared && goto restored
)
echo old-sbs has not shared the folders again within 30 minutes. 1>&2
exit /b 1
:restored
echo old-sbs shares %SHARES% again, with their original permissions.
exit /b 0

:restore_one
if not exist "%SAVE%\%~1.def" (
    echo %~1: nothing saved in %SAVE%: the share was never closed by this step.
    exit /b 0
)
setlocal EnableDelayedExpansion
set /p DATA=<"%SAVE%\%~1.def"
set "SD="
if exist "%SAVE%\%~1.sd" set /p SD=<"%SAVE%\%~1.sd"
reg add "\\%OLD%\%KEY%" /v %~1 /t REG_MULTI_SZ /d "!DATA!" /f
if errorlevel 1 exit /b 1
if defined SD (
    reg add "\\%OLD%\%KEY%\Security" /v %~1 /t REG_BINARY /d !SD! /f
    if errorlevel 1 exit /b 1
)
endlocal
exit /b 0

:all_shared
for %%S in (%SHARES%) do (
    net view \\%OLD% 2>nul | findstr /b /i /c:"%%S " >nul || exit /b 1
)
exit /b 0
